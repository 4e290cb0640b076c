//! What a URL may carry: a URL a registry handed back (a tags `Link`, an upload
//! `Location`, a redirect, a token realm) and the URL of the response it came in, in; a
//! resolved [`Url`] berth may send to, or a [`UrlError`], out; and with a [`Credential`],
//! whether the `Authorization` header goes along. Every request of the client is made
//! through [`crate::client::Registry`]'s one exchange function, which asks this module for
//! each URL and each redirect hop.
//!
//! The rule, as Docker's (its authorizer keys challenges by scheme, host and port): a
//! credential belongs to one origin, the scheme, host and port of the registry (or of the
//! token realm the registry named), and goes to no other. A URL on another origin is still
//! followed, without credentials, as Docker and a browser do (a blob on object storage, a
//! presigned upload URL). Refused outright: schemes other than `http` and `https`, URLs
//! with a user name or password in them, and a step from HTTPS down to plain HTTP (Docker
//! follows that one; berth does not let a registry move a request where anyone on the path
//! reads it).

use reqwest::Url;

/// The scheme, host and port of a URL (the port the scheme implies when none is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// `None` for a URL without a host or a known port (not `http(s)`).
    pub fn of(url: &Url) -> Option<Origin> {
        Some(Origin {
            scheme: url.scheme().to_ascii_lowercase(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Why a URL from a registry is not followed. Messages never hold the URL's user name or
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{what} is not a valid URL ({reason})")]
    Malformed { what: String, reason: String },
    #[error("{what} has the scheme {scheme:?}: only http and https are followed")]
    Scheme { what: String, scheme: String },
    #[error("{what} holds a user name or password: refused")]
    Userinfo { what: String },
    #[error("{what} leads from HTTPS to plain HTTP ({url}): refused")]
    Downgrade { what: String, url: String },
}

/// Resolves `reference` (absolute, or relative to `base`, the URL of the response it came
/// in) into a URL berth may send to. `what` names it in errors (`the tags Link`).
pub fn resolve(base: &Url, reference: &str, what: &str) -> Result<Url, UrlError> {
    let url = base
        .join(reference.trim())
        .map_err(|e| UrlError::Malformed {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme {
            what: what.to_owned(),
            scheme: url.scheme().to_owned(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Userinfo {
            what: what.to_owned(),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::Malformed {
            what: what.to_owned(),
            reason: "no host".into(),
        });
    }
    if base.scheme() == "https" && url.scheme() == "http" {
        return Err(UrlError::Downgrade {
            what: what.to_owned(),
            url: Origin::of(&url).map_or_else(|| url.to_string(), |o| o.to_string()),
        });
    }
    Ok(url)
}

/// An `Authorization` value and the one origin it may be sent to.
#[derive(Clone)]
pub struct Credential {
    origin: Origin,
    header: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Credential {
    pub fn new(origin: Origin, header: String) -> Credential {
        Credential { origin, header }
    }

    /// The header to send to `url`: only on the credential's own origin.
    pub fn for_url(&self, url: &Url) -> Option<&str> {
        (Origin::of(url).as_ref() == Some(&self.origin)).then_some(self.header.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Url {
        Url::parse("http://127.0.0.1:5000/v2/a/tags/list?n=1").unwrap()
    }

    fn carried(base: &Url, reference: &str) -> Result<bool, UrlError> {
        let cred = Credential::new(Origin::of(base).unwrap(), "Basic x".into());
        let url = resolve(base, reference, "the link")?;
        Ok(cred.for_url(&url).is_some())
    }

    #[test]
    fn relative_urls_resolve_against_the_registry_and_carry_credentials() {
        let base = registry();
        for r in [
            "/v2/a/tags/list?last=x",
            "list?last=x",
            "?last=x",
            " /v2/x ",
        ] {
            assert_eq!(carried(&base, r), Ok(true), "{r}");
        }
        assert_eq!(
            resolve(&base, "/v2/a/tags/list?last=x", "l")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:5000/v2/a/tags/list?last=x"
        );
    }

    #[test]
    fn other_origins_are_followed_without_credentials() {
        let base = registry();
        for r in [
            "http://127.0.0.2:5000/v2/x",
            "http://127.0.0.1:5001/v2/x",
            "http://localhost:5000/v2/x",
            "https://127.0.0.1:5000/v2/x",
            "//127.0.0.2:5000/v2/x",
            "/\\127.0.0.2:5000/v2/x",
            "\\\\127.0.0.2:5000\\v2",
            "http://127.0.0.1/v2/x",
        ] {
            assert_eq!(carried(&base, r), Ok(false), "{r}");
        }
        // Spellings of the registry's own origin.
        for r in [
            "HTTP://127.0.0.1:5000/x",
            "http://2130706433:5000/x",
            "http://0x7f.0.0.1:5000/x",
            "http://127.0.0.1:05000/x",
        ] {
            assert_eq!(carried(&base, r), Ok(true), "{r}");
        }
        let tls = Url::parse("https://reg.example/v2/").unwrap();
        assert_eq!(carried(&tls, "https://REG.example:443/x"), Ok(true));
        assert_eq!(carried(&tls, "https://reg.example:444/x"), Ok(false));
    }

    #[test]
    fn schemes_userinfo_and_downgrades_are_refused() {
        let base = registry();
        for r in [
            "ftp://127.0.0.1:5000/x",
            "file:///etc/passwd",
            "javascript:alert(1)",
        ] {
            assert!(
                matches!(resolve(&base, r, "l"), Err(UrlError::Scheme { .. })),
                "{r}"
            );
        }
        for r in [
            "http://u:p@127.0.0.1:5000/x",
            "http://u@127.0.0.2/x",
            "//:secret@127.0.0.1:5000/x",
        ] {
            let e = resolve(&base, r, "l").unwrap_err();
            assert!(matches!(e, UrlError::Userinfo { .. }), "{r}");
            assert!(!e.to_string().contains("secret") && !e.to_string().contains(":p@"));
        }
        let tls = Url::parse("https://127.0.0.1:5000/v2/").unwrap();
        assert!(matches!(
            resolve(&tls, "http://127.0.0.1:5000/x", "l"),
            Err(UrlError::Downgrade { .. })
        ));
        assert!(resolve(&base, "https://127.0.0.1:5000/x", "l").is_ok());
        assert!(matches!(
            resolve(&base, "http://[::1/x", "l"),
            Err(UrlError::Malformed { .. })
        ));
    }

    /// URLs written to look like the registry's to a person (or to a naive parser) name
    /// another host, and get no credentials; ones that are not URLs at all are refused.
    #[test]
    fn lookalike_urls_get_no_credentials() {
        let base = registry();
        for r in [
            "http://evil.example#@127.0.0.1:5000/x",
            "http://evil.example\\@127.0.0.1:5000/x",
            "http://evil.example?@127.0.0.1:5000/x",
            "http://127.0.0.1.evil.example:5000/x",
            "http://127.0.0.1%2eevil.example:5000/x",
            "http://[::ffff:127.0.0.1]:5000/x",
            "http://0:5000/x",
            "http:///127.0.0.2:5000/x",
        ] {
            assert_eq!(carried(&base, r), Ok(false), "{r}");
        }
        assert!(matches!(
            carried(&base, "http://127.0.0.1:5000%2f@evil.example/x"),
            Err(UrlError::Userinfo { .. })
        ));
        for r in [
            "http://127.0.0.1:5000.evil.example/x",
            "http://127.0.0.1:99999/x",
            "http://[127.0.0.1]:5000/x",
        ] {
            assert!(
                matches!(resolve(&base, r, "l"), Err(UrlError::Malformed { .. })),
                "{r}: {:?}",
                resolve(&base, r, "l")
            );
        }
    }

    /// A small deterministic generator (xorshift), so failures replay.
    struct Rng(u64);
    impl Rng {
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            &items[(self.0 % items.len() as u64) as usize]
        }
    }

    /// For any URL built from these parts, credentials are attached exactly when the URL is
    /// valid and names the registry's scheme, host and port, judged by an oracle that knows
    /// which spellings name the same host (not by the url crate).
    #[test]
    fn credentials_go_only_to_the_same_origin_for_generated_urls() {
        // (spelling, host identity)
        let hosts: &[(&str, u8)] = &[
            ("127.0.0.1", 1),
            ("2130706433", 1),
            ("0x7f000001", 1),
            ("127.0.0.2", 2),
            ("localhost", 3),
            ("LocalHost", 3),
            ("[::1]", 4),
            ("reg.example", 5),
            ("REG.EXAMPLE", 5),
            ("reg.example.", 6),
        ];
        // (spelling, port or None for the scheme's own)
        let ports: &[(&str, Option<u16>)] = &[
            ("", None),
            (":80", Some(80)),
            (":443", Some(443)),
            (":5000", Some(5000)),
            (":05000", Some(5000)),
            (":5001", Some(5001)),
        ];
        // (spelling, Some(normalized) when http(s), "" for scheme-relative)
        let schemes: &[(&str, Option<&str>)] = &[
            ("http://", Some("http")),
            ("HTTP://", Some("http")),
            ("https://", Some("https")),
            ("HtTpS://", Some("https")),
            ("//", Some("")),
            ("ftp://", None),
            ("ws://", None),
        ];
        let users: &[(&str, bool)] = &[("", false), ("u@", true), ("u:p@", true), (":p@", true)];
        let paths = ["/v2/x", "", "/v2/../x?n=1", "/%2e%2e/x", "?q", "#f"];
        let registries: &[(&str, &str, u8, u16)] = &[
            ("http://127.0.0.1:5000/v2/a/tags/list", "http", 1, 5000),
            ("https://reg.example/v2/a/tags/list", "https", 5, 443),
            ("http://localhost/v2/", "http", 3, 80),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut attached = 0;
        for _ in 0..20_000 {
            let &(base, base_scheme, base_host, base_port) = rng.pick(registries);
            let base = Url::parse(base).unwrap();
            let &(s, scheme) = rng.pick(schemes);
            let &(h, host) = rng.pick(hosts);
            let &(p, port) = rng.pick(ports);
            let &(u, userinfo) = rng.pick(users);
            let path = rng.pick(&paths);
            let reference = format!("{s}{u}{h}{p}{path}");
            let scheme = scheme.map(|s| if s.is_empty() { base_scheme } else { s });
            let cred = Credential::new(Origin::of(&base).unwrap(), "Basic x".into());
            let got = resolve(&base, &reference, "the link");
            let expected_valid = scheme.is_some()
                && !userinfo
                && !(base_scheme == "https" && scheme == Some("http"));
            assert_eq!(got.is_ok(), expected_valid, "{base} + {reference}: {got:?}");
            let Ok(url) = got else { continue };
            let scheme = scheme.expect("valid");
            let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
            let same = scheme == base_scheme && host == base_host && port == base_port;
            assert_eq!(
                cred.for_url(&url).is_some(),
                same,
                "{base} + {reference} -> {url}"
            );
            attached += usize::from(same);
        }
        assert!(attached > 100, "the generator rarely hit the same origin");
    }
}
