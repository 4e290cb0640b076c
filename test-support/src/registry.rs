//! A real registry for tests: Debian's `docker-registry` (distribution v2.8) started on a
//! free 127.0.0.1 port with a storage directory of its own, optionally with htpasswd auth,
//! TLS (a CA made for the test, and a server certificate for 127.0.0.1 and localhost), or
//! token auth (a token server in a thread of the test, signing ES256 JWTs with a key whose
//! certificate the registry trusts). Stopped by its PID on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;

use crate::certs::TestCa;

/// What the registry asks of clients.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// htpasswd users (name, password).
    pub htpasswd: Vec<(String, String)>,
    pub tls: bool,
    /// Token auth with these users (those named `reader…` get pull access only); anonymous
    /// users may pull when `anonymous_pull`.
    pub token_users: Vec<(String, String)>,
    pub anonymous_pull: bool,
    /// Token lifetime in seconds.
    pub token_ttl: u64,
    /// TLS that requires a client certificate signed by a CA of the test's
    /// ([`TestRegistry::client_certs_dir`] holds one).
    pub client_certs: bool,
}

/// One request in the registry's access log ([`TestRegistry::served`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub method: String,
    /// The path with its query.
    pub path: String,
    pub status: u16,
    /// The size of the response's body.
    pub bytes: u64,
}

/// A running registry.
#[derive(Debug)]
pub struct TestRegistry {
    child: Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The CA certificate (PEM) when TLS is on.
    pub ca_pem: Option<String>,
    /// A client certificate and key (PEM) the registry accepts, with `client_certs`.
    client_pem: Option<(String, String)>,
    token_server: Option<TokenServer>,
}

#[derive(Debug)]
struct TokenServer {
    stop: Arc<AtomicBool>,
    pub issued: Arc<AtomicUsize>,
    /// Every token issued, for tests that check none leaks.
    pub tokens: Arc<std::sync::Mutex<Vec<String>>>,
    port: u16,
}

fn spawn_registry(dir: &Path) -> Child {
    let log = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .unwrap()
    };
    Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(log("access.log"))
        .stderr(log("registry.log"))
        .spawn()
        .expect("starting docker-registry")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl TestRegistry {
    pub fn start(config: RegistryConfig) -> TestRegistry {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "docker-registry is missing: apt-get install docker-registry"
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: berth-test-secret\n",
            dir.path().join("data").display()
        );
        let mut ca_pem = None;
        let mut client_pem = None;
        if config.tls {
            let ca = TestCa::new("berth test CA");
            let (cert, key) = ca.server_cert();
            std::fs::write(dir.path().join("server.crt"), cert.pem()).unwrap();
            std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("server.crt").display(),
                dir.path().join("server.key").display()
            ));
            if config.client_certs {
                let client_key = rcgen::KeyPair::generate().unwrap();
                let mut client_params =
                    rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
                client_params
                    .distinguished_name
                    .push(rcgen::DnType::CommonName, "berth test client");
                client_params.extended_key_usages =
                    vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
                let client = client_params
                    .signed_by(&client_key, &ca.cert, &ca.key)
                    .unwrap();
                std::fs::write(dir.path().join("client-ca.crt"), ca.cert.pem()).unwrap();
                yaml.push_str(&format!(
                    "    clientcas:\n      - {}\n",
                    dir.path().join("client-ca.crt").display()
                ));
                client_pem = Some((client.pem(), client_key.serialize_pem()));
            }
            ca_pem = Some(ca.cert.pem());
        }
        if !config.htpasswd.is_empty() {
            let mut lines = String::new();
            for (u, p) in &config.htpasswd {
                let hash = bcrypt::hash_with_result(p, 4)
                    .unwrap()
                    .format_for_version(bcrypt::Version::TwoA);
                lines.push_str(&format!("{u}:{hash}\n"));
            }
            std::fs::write(dir.path().join("htpasswd"), lines).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        let mut token_server = None;
        if !config.token_users.is_empty() || config.anonymous_pull {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "berth test token signer");
            let cert = params.self_signed(&key).unwrap();
            std::fs::write(dir.path().join("token.crt"), cert.pem()).unwrap();
            let tport = free_port();
            yaml.push_str(&format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{tport}/token\n    service: berth-test\n    issuer: berth-test-issuer\n    rootcertbundle: {}\n",
                dir.path().join("token.crt").display()
            ));
            token_server = Some(TokenServer::start(
                tport,
                key,
                cert.der().to_vec(),
                config.clone(),
            ));
        }
        std::fs::write(dir.path().join("config.yml"), yaml).unwrap();
        let child = spawn_registry(dir.path());
        let mut registry = TestRegistry {
            child,
            dir,
            host,
            ca_pem,
            client_pem,
            token_server,
        };
        registry.wait_until_up();
        registry
    }

    fn wait_until_up(&mut self) {
        for _ in 0..200 {
            if TcpStream::connect(&self.host).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// Stops the registry (kill -9), keeping its data.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the stopped registry again on the same port with the same data.
    pub fn start_again(&mut self) {
        self.child = spawn_registry(self.dir.path());
        self.wait_until_up();
    }

    /// A `/etc/docker/certs.d`-style directory holding this registry's CA, for
    /// `BERTH_CERTS_DIR`.
    pub fn certs_dir(&self) -> PathBuf {
        let d = self.dir.path().join("certs.d");
        let host_dir = d.join(&self.host);
        std::fs::create_dir_all(&host_dir).unwrap();
        if let Some(ca) = &self.ca_pem {
            std::fs::write(host_dir.join("ca.crt"), ca).unwrap();
        }
        d
    }

    /// A certs.d-style directory with the CA and, as `client.cert`/`client.key`, a client
    /// certificate the registry accepts (with `client_certs`).
    pub fn client_certs_dir(&self) -> PathBuf {
        let d = self.dir.path().join("client-certs.d");
        let host_dir = d.join(&self.host);
        std::fs::create_dir_all(&host_dir).unwrap();
        if let Some(ca) = &self.ca_pem {
            std::fs::write(host_dir.join("ca.crt"), ca).unwrap();
        }
        if let Some((cert, key)) = &self.client_pem {
            std::fs::write(host_dir.join("client.cert"), cert).unwrap();
            std::fs::write(host_dir.join("client.key"), key).unwrap();
        }
        d
    }

    /// The registry process's CPU time so far (user and system), from `/proc`.
    pub fn cpu_time(&self) -> std::time::Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at its closing ')'.
        let ticks: u64 = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|f| f.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
        // In USER_HZ, which Linux fixes at 100 for /proc whatever the kernel's own tick.
        std::time::Duration::from_millis(ticks * 10)
    }

    /// The requests the registry served so far, from its access log: `METHOD PATH STATUS`
    /// (`PATH` with its query).
    pub fn requests(&self) -> Vec<String> {
        self.served()
            .into_iter()
            .map(|r| format!("{} {} {}", r.method, r.path, r.status))
            .collect()
    }

    /// The requests the registry served so far, with the size of each response's body, from
    /// its access log (combined log format: `"METHOD PATH PROTO" STATUS BYTES`). The registry
    /// writes a line once the response has been sent, so a client can exit a moment before
    /// the line of its last request is there.
    pub fn served(&self) -> Vec<Served> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let (_, rest) = l.split_once('"')?;
                let (request, rest) = rest.split_once('"')?;
                let mut parts = request.split_whitespace();
                let (method, path) = (parts.next()?, parts.next()?);
                let mut fields = rest.split_whitespace();
                let status = fields.next()?.parse().ok()?;
                // `-` when no body was sent.
                let bytes = fields.next().and_then(|b| b.parse().ok()).unwrap_or(0);
                Some(Served {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    status,
                    bytes,
                })
            })
            .collect()
    }

    /// Every token the token server issued (and refresh tokens), in order.
    pub fn tokens(&self) -> Vec<String> {
        self.token_server
            .as_ref()
            .map_or_else(Vec::new, |t| t.tokens.lock().unwrap().clone())
    }

    /// How many tokens the token server issued.
    pub fn tokens_issued(&self) -> usize {
        self.token_server
            .as_ref()
            .map_or(0, |t| t.issued.load(Ordering::SeqCst))
    }

    /// The registry's storage directory (to corrupt blobs in tests).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(t) = &self.token_server {
            t.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(("127.0.0.1", t.port));
        }
    }
}

impl TokenServer {
    fn start(
        port: u16,
        key: rcgen::KeyPair,
        cert_der: Vec<u8>,
        config: RegistryConfig,
    ) -> TokenServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("token server port");
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicUsize::new(0));
        let tokens = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop2, issued2, tokens2) = (stop.clone(), issued.clone(), tokens.clone());
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .expect("an ECDSA P-256 key");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let _ = serve_token(stream, &signer, &cert_der, &config, &issued2, &tokens2);
            }
        });
        TokenServer {
            stop,
            issued,
            tokens,
            port,
        }
    }
}

fn serve_token(
    mut stream: TcpStream,
    signer: &ring::signature::EcdsaKeyPair,
    cert_der: &[u8],
    config: &RegistryConfig,
    issued: &AtomicUsize,
    tokens: &std::sync::Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut auth = None;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "authorization" => auth = Some(v.trim().to_owned()),
                "content-length" => content_length = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target
        .split_once('?')
        .map(|(_, q)| q.to_owned())
        .unwrap_or_default();
    let query = if query.is_empty() {
        String::from_utf8_lossy(&body).into_owned()
    } else {
        query
    };
    let user = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
    let refresh = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("refresh_token="))
        .map(|v| v.to_owned());
    let who = match (&user, &refresh) {
        (Some((u, p)), _) => {
            if !config.token_users.iter().any(|(cu, cp)| cu == u && cp == p) {
                let body = r#"{"details":"incorrect username or password"}"#;
                write!(
                    stream,
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )?;
                return Ok(());
            }
            Some(u.clone())
        }
        (None, Some(r)) => config
            .token_users
            .iter()
            .find(|(u, _)| format!("refresh-{u}") == *r)
            .map(|(u, _)| u.clone()),
        _ => None,
    };
    let mut access = Vec::new();
    for kv in query.split('&') {
        let Some(scope) = kv.strip_prefix("scope=") else {
            continue;
        };
        let scope = percent_decode(scope);
        let parts: Vec<&str> = scope.split(':').collect();
        if parts.len() == 3 && parts[0] == "repository" {
            let actions: Vec<&str> = parts[2]
                .split(',')
                .filter(|a| match &who {
                    // Users named `reader…` may only pull.
                    Some(u) => *a == "pull" || !u.starts_with("reader"),
                    None => config.anonymous_pull && *a == "pull",
                })
                .collect();
            access.push(
                serde_json::json!({"type": "repository", "name": parts[1], "actions": actions}),
            );
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ttl = if config.token_ttl == 0 {
        300
    } else {
        config.token_ttl
    };
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [base64::engine::general_purpose::STANDARD.encode(cert_der)]});
    let n = issued.fetch_add(1, Ordering::SeqCst);
    let claims = serde_json::json!({
        "iss": "berth-test-issuer", "sub": who.clone().unwrap_or_default(), "aud": "berth-test",
        "exp": now + ttl, "nbf": now - 10, "iat": now, "jti": format!("t{n}"), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = signer
        .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
        .expect("signing");
    let token = format!("{signing_input}.{}", b64url(sig.as_ref()));
    tokens.lock().unwrap().push(token.clone());
    let mut answer = serde_json::json!({"token": token, "access_token": token, "expires_in": ttl});
    if let Some(u) = &who {
        answer["refresh_token"] = serde_json::json!(format!("refresh-{u}"));
    }
    let body = answer.to_string();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
