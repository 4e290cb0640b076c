//! Certificates for the loopback TLS servers (the registry, the proxies): a name in, a fresh
//! CA out, which signs server certificates for `localhost` and 127.0.0.1 (and client
//! certificates, for mutual TLS).

/// A certificate authority made for one server.
pub(crate) struct TestCa {
    pub(crate) cert: rcgen::Certificate,
    pub(crate) key: rcgen::KeyPair,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("a CA certificate");
        TestCa { cert, key }
    }

    /// A server certificate for `localhost` and 127.0.0.1, and its key.
    pub(crate) fn server_cert(&self) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.subject_alt_names.push(rcgen::SanType::IpAddress(
            "127.0.0.1".parse().expect("an IP"),
        ));
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("a server certificate");
        (cert, key)
    }
}
