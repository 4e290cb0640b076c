//! Errors people can act on: which registry and repository, and what kind of failure —
//! network, TLS (and where a CA certificate would go), 401 (log in), 403 (no permission),
//! 404, a digest mismatch, a rate limit — with the registry's own message when it sent one.
//! Credentials never appear in a message.

use berth_oci::Digest;
use berth_oci::transport::TransportError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{registry}: cannot connect: {message}")]
    Network { registry: String, message: String },
    #[error("{registry}: TLS: {message}")]
    Tls { registry: String, message: String },
    #[error("{registry}/{repository}: authentication required: {message}")]
    Unauthorized {
        registry: String,
        repository: String,
        message: String,
    },
    #[error("{registry}/{repository}: access denied (403): {message}")]
    Denied {
        registry: String,
        repository: String,
        message: String,
    },
    #[error("{registry}/{repository}: {what} not found")]
    NotFound {
        registry: String,
        repository: String,
        what: String,
    },
    #[error("{registry}: too many requests (429): the registry's rate limit was reached{}", retry_after.map(|s| format!("; try again in {s} s")).unwrap_or_default())]
    RateLimited {
        registry: String,
        retry_after: Option<u64>,
    },
    #[error("{registry}/{repository}: {what}: digest mismatch: expected {expected}, got {found}")]
    DigestMismatch {
        registry: String,
        repository: String,
        what: String,
        expected: Digest,
        found: Digest,
    },
    #[error("{registry}/{repository}: {what}: {status}: {message}")]
    Status {
        registry: String,
        repository: String,
        what: String,
        status: u16,
        message: String,
    },
    #[error("{registry}: {message}")]
    Protocol { registry: String, message: String },
    /// A URL the registry handed back that berth does not follow.
    #[error("{registry}: {error}")]
    Url {
        registry: String,
        error: crate::origin::UrlError,
    },
    #[error("credentials: {0}")]
    Credentials(#[from] crate::creds::CredentialError),
}

impl RegistryError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Network { .. } | RegistryError::RateLimited { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

impl From<RegistryError> for TransportError {
    fn from(e: RegistryError) -> TransportError {
        match e {
            RegistryError::NotFound {
                registry,
                repository,
                what,
            } => TransportError::NotFound {
                what: format!("{registry}/{repository}: {what}"),
            },
            RegistryError::DigestMismatch {
                what,
                expected,
                found,
                ..
            } => TransportError::DigestMismatch {
                what,
                expected,
                found,
            },
            // The message is the whole story: no source, or `{:#}` would print it twice.
            other => TransportError::Other {
                message: other.to_string(),
                retryable: other.is_retryable(),
                source: None,
            },
        }
    }
}

/// The `errors` array of a registry's error body, as one message.
pub fn decode_error_body(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let b: Body = serde_json::from_slice(body).ok()?;
    let parts: Vec<String> = b
        .errors
        .iter()
        .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
            (false, false) => format!("{} ({})", e.message, e.code),
            (true, false) => e.message.clone(),
            _ => e.code.clone(),
        })
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_decode() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(
            decode_error_body(body).as_deref(),
            Some("manifest unknown (MANIFEST_UNKNOWN)")
        );
        assert_eq!(decode_error_body(b"<html>"), None);
        let body = br#"{"errors":[{"code":"DENIED"},{"message":"no"},{"code":"","message":""}]}"#;
        assert_eq!(decode_error_body(body).as_deref(), Some("DENIED; no"));
        assert_eq!(decode_error_body(br#"{"errors":[]}"#), None);
    }

    fn status(status: u16) -> RegistryError {
        RegistryError::Status {
            registry: "r".into(),
            repository: "a/b".into(),
            what: "the manifest".into(),
            status,
            message: "m".into(),
        }
    }

    /// Retried: the network, a rate limit, a server error. Not: what the same request will
    /// get again (a refusal, a missing manifest, a bad digest, a 4xx).
    #[test]
    fn only_failures_that_may_pass_next_time_are_retryable() {
        let network = RegistryError::Network {
            registry: "r".into(),
            message: "connection refused".into(),
        };
        let limited = RegistryError::RateLimited {
            registry: "r".into(),
            retry_after: Some(3),
        };
        for e in [network, limited, status(500), status(503)] {
            assert!(e.is_retryable(), "{e}");
            assert!(
                matches!(
                    TransportError::from(e),
                    TransportError::Other {
                        retryable: true,
                        ..
                    }
                ),
                "the transport error keeps it"
            );
        }
        let unauthorized = RegistryError::Unauthorized {
            registry: "r".into(),
            repository: "a/b".into(),
            message: "log in".into(),
        };
        let tls = RegistryError::Tls {
            registry: "r".into(),
            message: "unknown issuer".into(),
        };
        for e in [unauthorized, tls, status(400), status(404), status(499)] {
            assert!(!e.is_retryable(), "{e}");
        }
    }

    #[test]
    fn not_found_and_digest_mismatch_keep_their_kind_across_the_transport() {
        let e = TransportError::from(RegistryError::NotFound {
            registry: "r".into(),
            repository: "a/b".into(),
            what: "manifest 1".into(),
        });
        assert!(
            matches!(&e, TransportError::NotFound { what } if what == "r/a/b: manifest 1"),
            "{e:?}"
        );
        let (expected, found) = (Digest::of(b"a"), Digest::of(b"b"));
        let e = TransportError::from(RegistryError::DigestMismatch {
            registry: "r".into(),
            repository: "a/b".into(),
            what: "layer".into(),
            expected: expected.clone(),
            found: found.clone(),
        });
        assert!(
            matches!(&e, TransportError::DigestMismatch { expected: x, found: y, .. } if *x == expected && *y == found),
            "{e:?}"
        );
    }

    #[test]
    fn a_rate_limit_says_when_to_try_again() {
        let e = RegistryError::RateLimited {
            registry: "r".into(),
            retry_after: Some(7),
        };
        assert!(e.to_string().ends_with("; try again in 7 s"), "{e}");
        let e = RegistryError::RateLimited {
            registry: "r".into(),
            retry_after: None,
        };
        assert!(!e.to_string().contains("try again"), "{e}");
    }
}
