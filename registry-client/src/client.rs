//! One registry: the HTTP client (rustls, per-registry CAs), the scheme (HTTPS; plain HTTP
//! only for insecure registries), credentials, and the authentication flow shared by every
//! request: send, and on `401` read the `WWW-Authenticate` challenges and answer them —
//! `Basic` with the credentials, `Bearer` with a token from the realm for the scopes the
//! request needs (anonymous when there are no credentials; with an identity token through
//! the OAuth2 refresh-token grant) — then send again. Tokens are cached per scope set until
//! they expire; a `401`/`403` with `insufficient_scope` fetches a new one. Idempotent
//! requests are retried with backoff on network errors, `5xx` and `429` (`Retry-After`
//! honoured, at most 10 s).
//!
//! Every request goes through one function, [`Registry::exchange`], which follows redirects
//! itself (reqwest's own following is off) and asks [`crate::origin`] about every URL: the
//! request's, each redirect's, and through the callers every URL a registry hands back (tags
//! `Link`, upload `Location`, the token realm). Credentials go only to the origin (scheme,
//! host, port) they are for: the registry's, or the realm the registry itself named (as
//! Docker does); a URL on another origin is followed without them, and only a response from
//! the registry's own origin is answered with credentials when it asks for them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use berth_oci::limits;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::auth::{Challenge, TokenResponse, parse_challenges};
use crate::creds::Credentials;
use crate::error::{RegistryError, decode_error_body};
use crate::origin::{self, Credential, Origin};
use reqwest::Url;

/// Redirects followed for one request (Go's and reqwest's default).
const MAX_REDIRECTS: usize = 10;

/// A request body for [`Registry::exchange`]: bytes may be sent again (after a retry or a
/// redirect); a stream is sent once, and a redirect in answer to it is returned as it is.
enum Payload {
    Bytes(bytes::Bytes),
    Stream(Option<reqwest::Body>),
}

/// How registries are reached.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hosts (`host[:port]`) reached over plain HTTP when HTTPS does not answer, with any
    /// certificate accepted over HTTPS (`BERTH_INSECURE_REGISTRIES`). localhost and
    /// 127.0.0.0/8 may use plain HTTP too, as Docker allows, but a loopback registry that
    /// answers HTTPS must present a certificate berth can verify (stricter than Docker).
    pub insecure: Vec<String>,
    /// `--tls-verify=false`: accept any certificate, and plain HTTP, for every registry.
    pub tls_verify: bool,
    pub certs_dirs: Vec<PathBuf>,
    /// Mirrors tried first for Docker Hub images (`BERTH_REGISTRY_MIRRORS`, `host[:port]`).
    pub mirrors: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            insecure: Vec::new(),
            tls_verify: true,
            certs_dirs: crate::tls::default_certs_dirs(),
            mirrors: Vec::new(),
        }
    }
}

impl Options {
    /// Defaults plus `BERTH_INSECURE_REGISTRIES` and `BERTH_REGISTRY_MIRRORS` (comma lists).
    pub fn from_env() -> Options {
        let list = |name: &str| -> Vec<String> {
            std::env::var(name)
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        Options {
            insecure: list("BERTH_INSECURE_REGISTRIES"),
            mirrors: list("BERTH_REGISTRY_MIRRORS"),
            ..Options::default()
        }
    }

    /// Whether `host` may be reached without verified TLS.
    pub fn is_insecure(&self, host: &str) -> bool {
        if !self.tls_verify || self.insecure.iter().any(|h| h == host) {
            return true;
        }
        let name = match host.rsplit_once(':') {
            Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) => n,
            _ => host,
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        name == "localhost"
            || name == "::1"
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// The API host of a reference's registry (`docker.io` is served by `registry-1.docker.io`).
pub fn api_host(registry: &str) -> &str {
    if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    expires: Instant,
}

/// A request to send through the authentication flow.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Path and query after the host (`/v2/...`), or a full URL (an upload `Location`).
    pub path: String,
    /// Scopes the request needs (`repository:a/b:pull`).
    pub scopes: Vec<String>,
    pub headers: HeaderMap,
    pub body: Option<bytes::Bytes>,
    /// For messages.
    pub repository: String,
    pub what: String,
}

impl Request {
    pub fn new(method: Method, path: String, repository: &str, what: &str) -> Request {
        Request {
            method,
            path,
            scopes: Vec::new(),
            headers: HeaderMap::new(),
            body: None,
            repository: repository.to_owned(),
            what: what.to_owned(),
        }
    }
}

/// A connected registry.
#[derive(Debug)]
pub struct Registry {
    /// As references name it (`docker.io`, `127.0.0.1:5000`).
    pub name: String,
    /// `https://host` or `http://host`.
    pub base: String,
    /// `base` as a URL, and its origin: the only one the credentials go to.
    base_url: Url,
    origin: Origin,
    http: reqwest::Client,
    creds: Option<Credentials>,
    tokens: Mutex<HashMap<String, Token>>,
    /// The last scheme the registry asked for (`Basic`: send credentials up front).
    basic: Mutex<bool>,
    tls: crate::tls::TlsFiles,
}

/// A transport failure as an error people can act on: the whole cause chain, and for a TLS
/// failure the place the CA goes. Used for any HTTPS peer (registries, `ADD` URLs).
pub fn network_error(registry: &str, e: &reqwest::Error) -> RegistryError {
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        chain.push_str(&s.to_string());
        chain.push_str(": ");
        source = s.source();
    }
    let chain = chain.trim_end_matches(": ").to_owned();
    if chain.contains("certificate") || chain.contains("UnknownIssuer") || chain.contains("tls") {
        let hint = if chain.contains("UnknownIssuer") || chain.contains("unknown issuer") {
            format!(
                "; the registry's certificate is signed by an unknown authority: put that CA certificate in /etc/docker/certs.d/{registry}/ca.crt (or /etc/containers/certs.d/{registry}/), or use --tls-verify=false for a test registry"
            )
        } else {
            String::new()
        };
        return RegistryError::Tls {
            registry: registry.to_owned(),
            message: format!("{chain}{hint}"),
        };
    }
    RegistryError::Network {
        registry: registry.to_owned(),
        message: chain,
    }
}

/// Reads a response body, failing past `limit` bytes.
pub async fn read_limited(
    registry: &str,
    mut resp: reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| network_error(registry, &e))?
    {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(RegistryError::Protocol {
                registry: registry.to_owned(),
                message: format!("a response larger than {limit} bytes was refused"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The longest a bearer token is kept, whatever `expires_in` the token service gives.
const MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 60 * 60;

pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * (1 << attempt.min(5)))
}

impl Registry {
    /// Connects to `name` (a reference's registry): builds the client and picks the scheme
    /// (HTTPS; for an insecure registry, plain HTTP when HTTPS does not answer).
    pub async fn connect(
        name: &str,
        options: &Options,
        creds: Option<Credentials>,
    ) -> Result<Arc<Registry>, RegistryError> {
        let host = api_host(name).to_owned();
        let insecure = options.is_insecure(name);
        // Certificates are verified unless the registry is named insecure (or
        // `--tls-verify=false`): a loopback registry that speaks TLS is verified too.
        let verify = options.tls_verify && !options.insecure.iter().any(|h| h == name);
        let (tls, files) =
            crate::tls::client_config(&host, &options.certs_dirs, verify).map_err(|message| {
                RegistryError::Tls {
                    registry: name.to_owned(),
                    message,
                }
            })?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RegistryError::Protocol {
                registry: name.to_owned(),
                message: e.to_string(),
            })?;
        let mut base = format!("https://{host}");
        if insecure {
            let probe = http
                .get(format!("{base}/v2/"))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            // Plain HTTP only when HTTPS does not answer at all: a certificate problem is
            // reported, never silently downgraded.
            if let Err(e) = probe
                && !matches!(network_error(name, &e), RegistryError::Tls { ref message, .. } if message.contains("certificate"))
            {
                base = format!("http://{host}");
            }
        }
        let base_url = Url::parse(&base).map_err(|e| RegistryError::Protocol {
            registry: name.to_owned(),
            message: format!("not a registry address: {e}"),
        })?;
        let origin = Origin::of(&base_url).ok_or_else(|| RegistryError::Protocol {
            registry: name.to_owned(),
            message: "not a registry address".into(),
        })?;
        Ok(Arc::new(Registry {
            name: name.to_owned(),
            base,
            base_url,
            origin,
            http,
            creds,
            tokens: Mutex::new(HashMap::new()),
            basic: Mutex::new(false),
            tls: files,
        }))
    }

    /// The CA files loaded for this registry.
    pub fn tls_files(&self) -> &crate::tls::TlsFiles {
        &self.tls
    }

    /// `reference` (a path on the registry, or a URL the registry handed back), resolved
    /// against `base` (the URL of the response it came in; the registry's when `None`) and
    /// checked by [`origin::resolve`]. `what` names it in errors.
    pub fn resolve(
        &self,
        base: Option<&Url>,
        reference: &str,
        what: &str,
    ) -> Result<Url, RegistryError> {
        origin::resolve(base.unwrap_or(&self.base_url), reference, what).map_err(|error| {
            RegistryError::Url {
                registry: self.name.clone(),
                error,
            }
        })
    }

    /// Whether `url` is on the registry's own origin.
    pub fn is_own(&self, url: &Url) -> bool {
        Origin::of(url).as_ref() == Some(&self.origin)
    }

    /// Sends one request and follows its redirects. Every URL goes through
    /// [`origin::resolve`], and `credential` is attached to a URL only on its own origin
    /// ([`Credential::for_url`]). A body is never carried to another origin by a redirect
    /// (a token form holds a secret): such a redirect is an error. The outer error is a
    /// refused URL; the inner one a transport failure, which the caller may retry.
    async fn exchange(
        &self,
        mut method: Method,
        mut url: Url,
        headers: &HeaderMap,
        mut body: Payload,
        credential: Option<&Credential>,
    ) -> Result<Result<reqwest::Response, reqwest::Error>, RegistryError> {
        let first = Origin::of(&url);
        for _ in 0..=MAX_REDIRECTS {
            let mut rb = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(h) = credential.and_then(|c| c.for_url(&url)) {
                rb = rb.header(AUTHORIZATION, HeaderValue::from_str(h).expect("ASCII"));
            }
            let replayable = match &mut body {
                Payload::Bytes(b) => {
                    rb = rb.body(b.clone());
                    !b.is_empty()
                }
                Payload::Stream(s) => {
                    if let Some(s) = s.take() {
                        rb = rb.body(s);
                    }
                    false
                }
            };
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            let status = resp.status();
            let location = resp.headers().get(reqwest::header::LOCATION);
            let followed = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
                && !matches!(body, Payload::Stream(_));
            let (true, Some(location)) = (followed, location) else {
                return Ok(Ok(resp));
            };
            let location = location.to_str().unwrap_or("\u{fffd}");
            let next = self.resolve(Some(&url), location, "a redirect")?;
            // 303, and 301/302 after a POST, turn into a GET without the body (as browsers
            // and Go do); 307/308 send the same request again.
            if status == StatusCode::SEE_OTHER
                || (method == Method::POST && matches!(status.as_u16(), 301 | 302))
            {
                method = Method::GET;
                body = Payload::Bytes(bytes::Bytes::new());
            } else if replayable && Origin::of(&next) != first {
                return Err(RegistryError::Protocol {
                    registry: self.name.clone(),
                    message: format!(
                        "a redirect would carry a request body to another origin ({}): refused",
                        Origin::of(&next).map_or_else(String::new, |o| o.to_string())
                    ),
                });
            }
            url = next;
        }
        Err(RegistryError::Protocol {
            registry: self.name.clone(),
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// Sends a body that can be read only once (a blob upload) to `url`, with the
    /// credentials cached for `scopes` if `url` is on the registry's origin. No retry, and a
    /// redirect comes back as the response.
    pub async fn send_stream(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: reqwest::Body,
        scopes: &[String],
    ) -> Result<reqwest::Response, RegistryError> {
        let url = self.resolve(None, url, "an upload URL")?;
        let credential = self
            .cached(scopes)
            .map(|h| Credential::new(self.origin.clone(), h));
        self.exchange(
            method,
            url,
            &headers,
            Payload::Stream(Some(body)),
            credential.as_ref(),
        )
        .await?
        .map_err(|e| network_error(&self.name, &e))
    }

    fn basic_header(&self) -> Option<String> {
        let c = self.creds.as_ref()?;
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.username, c.secret))
        ))
    }

    fn scope_key(scopes: &[String]) -> String {
        let mut s = scopes.to_vec();
        s.sort();
        s.join(" ")
    }

    fn cached(&self, scopes: &[String]) -> Option<String> {
        if *self.basic.lock().expect("no panics") {
            return self.basic_header();
        }
        let tokens = self.tokens.lock().expect("no panics");
        let t = tokens.get(&Self::scope_key(scopes))?;
        (t.expires > Instant::now()).then(|| format!("Bearer {}", t.value))
    }

    /// The Authorization value that answers `challenges` for `scopes`.
    async fn authorize(
        &self,
        challenges: &[Challenge],
        req: &Request,
    ) -> Result<String, RegistryError> {
        let unauthorized = |message: String| RegistryError::Unauthorized {
            registry: self.name.clone(),
            repository: req.repository.clone(),
            message,
        };
        if let Some(c) = challenges.iter().find(|c| c.is("bearer")) {
            let realm = c
                .param("realm")
                .ok_or_else(|| RegistryError::Protocol {
                    registry: self.name.clone(),
                    message: "a Bearer challenge without a realm".into(),
                })?
                .to_owned();
            let mut scopes = req.scopes.clone();
            if let Some(s) = c.param("scope") {
                for s in s.split(' ') {
                    if !scopes.iter().any(|x| x == s) {
                        scopes.push(s.to_owned());
                    }
                }
            }
            let token = self
                .fetch_token(&realm, c.param("service"), &scopes, req)
                .await?;
            let value = format!("Bearer {}", token.value);
            self.tokens
                .lock()
                .expect("no panics")
                .insert(Self::scope_key(&req.scopes), token);
            return Ok(value);
        }
        if challenges.iter().any(|c| c.is("basic")) {
            *self.basic.lock().expect("no panics") = true;
            return self
                .basic_header()
                .ok_or_else(|| unauthorized(format!("log in first: berth login {}", self.name)));
        }
        Err(unauthorized(format!(
            "the registry asked for an unsupported scheme; log in first: berth login {}",
            self.name
        )))
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        req: &Request,
    ) -> Result<Token, RegistryError> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for s in scopes {
            query.push(("scope", s));
        }
        // The realm is a URL the registry named: checked like any other, and the one
        // origin besides the registry's that the credentials go to.
        let mut url = self.resolve(None, realm, "the token realm")?;
        let realm_origin = Origin::of(&url).expect("resolve gives http(s) URLs with a host");
        let mut headers = HeaderMap::new();
        let (method, body, credential) = match &self.creds {
            Some(c) if c.is_identity_token() => {
                let mut form = query.clone();
                form.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", c.secret.as_str()),
                    ("client_id", "berth"),
                ]);
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
                (Method::POST, bytes::Bytes::from(form_encode(&form)), None)
            }
            other => {
                url.query_pairs_mut().extend_pairs(&query);
                let credential = other.as_ref().map(|_| {
                    Credential::new(realm_origin, self.basic_header().expect("credentials"))
                });
                (Method::GET, bytes::Bytes::new(), credential)
            }
        };
        let resp = self
            .exchange(
                method,
                url,
                &headers,
                Payload::Bytes(body),
                credential.as_ref(),
            )
            .await?
            .map_err(|e| network_error(&self.name, &e))?;
        let status = resp.status();
        let body = read_limited(&self.name, resp, limits::MAX_TOKEN).await?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                registry: self.name.clone(),
                repository: req.repository.clone(),
                message: match &self.creds {
                    Some(_) => {
                        "the token service refused the credentials: wrong user name or password?"
                            .into()
                    }
                    None => format!("log in first: berth login {}", self.name),
                },
            });
        }
        if !status.is_success() {
            return Err(RegistryError::Status {
                registry: self.name.clone(),
                repository: req.repository.clone(),
                what: "token".into(),
                status: status.as_u16(),
                message: decode_error_body(&body)
                    .unwrap_or_else(|| "the token service failed".into()),
            });
        }
        let t: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                registry: self.name.clone(),
                message: format!("unreadable token response: {e}"),
            })?;
        let value = t.bearer().ok_or_else(|| RegistryError::Protocol {
            registry: self.name.clone(),
            message: "the token response holds no token".into(),
        })?;
        // Expire a little early; 60 s when the service says nothing (the spec's default). The
        // lifetime is the server's number: held between 10 s and a day, so no arithmetic on it
        // overflows and a token is asked for again at least daily.
        let secs = t
            .expires_in
            .unwrap_or(60)
            .clamp(10, MAX_TOKEN_LIFETIME_SECS);
        let now = Instant::now();
        Ok(Token {
            value: value.to_owned(),
            expires: now
                .checked_add(Duration::from_secs(secs - secs / 10))
                .unwrap_or(now),
        })
    }

    /// Sends a request through the authentication flow, retrying what may be retried.
    pub async fn send(&self, req: &Request) -> Result<reqwest::Response, RegistryError> {
        let mut auth = self.cached(&req.scopes);
        let mut answered = false;
        let idempotent = matches!(req.method, Method::GET | Method::HEAD)
            || req.body.is_some()
            || req.method == Method::DELETE;
        let mut attempt = 0u32;
        let url = self.resolve(None, &req.path, &req.what)?;
        loop {
            let credential = auth
                .as_ref()
                .map(|a| Credential::new(self.origin.clone(), a.clone()));
            let body = Payload::Bytes(req.body.clone().unwrap_or_default());
            let sent = self
                .exchange(
                    req.method.clone(),
                    url.clone(),
                    &req.headers,
                    body,
                    credential.as_ref(),
                )
                .await?;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    if idempotent
                        && attempt < 3
                        && (e.is_connect() || e.is_timeout() || e.is_request())
                    {
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(network_error(&self.name, &e));
                }
            };
            let status = resp.status();
            // Only the registry's own origin is answered with credentials: a challenge from
            // another one (after a redirect) could name a realm of its choosing.
            let challenges: Vec<Challenge> = if self.is_own(resp.url()) {
                resp.headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(parse_challenges)
                    .collect()
            } else {
                Vec::new()
            };
            let insufficient = challenges
                .iter()
                .any(|c| c.param("error") == Some("insufficient_scope"));
            if (status == StatusCode::UNAUTHORIZED
                || (status == StatusCode::FORBIDDEN && insufficient))
                && !answered
                && !challenges.is_empty()
            {
                answered = true;
                auth = Some(self.authorize(&challenges, req).await?);
                continue;
            }
            // A fresh token for these credentials still lacks the scope: they may not do it.
            if (status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN)
                && insufficient
                && self.creds.is_some()
            {
                let scope = challenges
                    .iter()
                    .find_map(|c| c.param("scope"))
                    .unwrap_or_default()
                    .to_owned();
                return Err(RegistryError::Denied {
                    registry: self.name.clone(),
                    repository: req.repository.clone(),
                    message: format!(
                        "these credentials are not allowed {} (the token server did not grant the scope {scope:?})",
                        if req.method == Method::GET || req.method == Method::HEAD {
                            "to pull from it"
                        } else {
                            "to push to it"
                        }
                    ),
                });
            }
            if status == StatusCode::UNAUTHORIZED {
                let body = read_limited(&self.name, resp, limits::MAX_ERROR_BODY)
                    .await
                    .unwrap_or_default();
                let detail = decode_error_body(&body).unwrap_or_default();
                return Err(RegistryError::Unauthorized {
                    registry: self.name.clone(),
                    repository: req.repository.clone(),
                    message: match &self.creds {
                        Some(_) => format!(
                            "the registry refused the credentials{}",
                            if detail.is_empty() {
                                String::new()
                            } else {
                                format!(" ({detail})")
                            }
                        ),
                        None => format!("log in first: berth login {}", self.name),
                    },
                });
            }
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                let wait = retry_after(&resp);
                if idempotent && attempt < 3 && wait.unwrap_or(0) <= 10 {
                    tokio::time::sleep(wait.map_or(backoff(attempt), Duration::from_secs)).await;
                    attempt += 1;
                    continue;
                }
                if status == StatusCode::TOO_MANY_REQUESTS {
                    return Err(RegistryError::RateLimited {
                        registry: self.name.clone(),
                        retry_after: wait,
                    });
                }
            }
            return Ok(resp);
        }
    }

    /// Turns an unexpected status into an error (reading the registry's message).
    pub async fn status_error(&self, req: &Request, resp: reqwest::Response) -> RegistryError {
        let status = resp.status();
        let body = read_limited(&self.name, resp, limits::MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        let message = decode_error_body(&body).unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_owned()
        });
        match status {
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                registry: self.name.clone(),
                repository: req.repository.clone(),
                what: format!("{} ({message})", req.what),
            },
            StatusCode::FORBIDDEN => RegistryError::Denied {
                registry: self.name.clone(),
                repository: req.repository.clone(),
                message: format!("no permission for {}: {message}", req.what),
            },
            _ => RegistryError::Status {
                registry: self.name.clone(),
                repository: req.repository.clone(),
                what: req.what.clone(),
                status: status.as_u16(),
                message,
            },
        }
    }

    /// `GET /v2/`: whether the registry answers, and accepts the credentials (login).
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let req = Request::new(Method::GET, "/v2/".into(), "", "the API");
        let resp = self.send(&req).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(&req, resp).await)
        }
    }
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut u = Url::parse("http://form.invalid/").expect("a valid URL");
    u.query_pairs_mut().extend_pairs(pairs);
    u.query().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_test_support::{Answer, ScriptedServer};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SCOPE: &str = "repository:a/b:pull";

    async fn connect(host: &str, creds: Option<Credentials>) -> Arc<Registry> {
        let options = Options {
            certs_dirs: Vec::new(),
            ..Options::default()
        };
        Registry::connect(host, &options, creds).await.unwrap()
    }

    fn request(method: Method, path: &str) -> Request {
        let mut r = Request::new(method, path.into(), "a/b", "the manifest");
        r.scopes = vec![SCOPE.to_owned()];
        r
    }

    /// The request most tests send: `GET` of a manifest.
    async fn get(reg: &Registry) -> Result<reqwest::Response, RegistryError> {
        reg.send(&request(Method::GET, "/v2/a/b/manifests/1")).await
    }

    fn user() -> Option<Credentials> {
        Some(Credentials {
            username: "u".into(),
            secret: "p".into(),
        })
    }

    fn basic(user: &str, secret: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
        )
    }

    /// A server that answers `status` (with these headers) to everything.
    fn always(status: u16, headers: &'static [(&'static str, &'static str)]) -> ScriptedServer {
        ScriptedServer::start(move |_| {
            headers
                .iter()
                .fold(Answer::status(status), |a, (n, v)| a.header(n, v))
        })
    }

    #[test]
    fn backoff_doubles_from_200_ms_and_stops_at_6_4_s() {
        let waits: Vec<u128> = (0..8).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 6400, 6400, 6400]);
        assert_eq!(backoff(u32::MAX), Duration::from_millis(6400));
    }

    #[tokio::test]
    async fn server_errors_are_retried_three_times_then_returned() {
        let server = always(503, &[("Retry-After", "0")]);
        let reg = connect(&server.host, None).await;
        let resp = get(&reg).await;
        assert_eq!(resp.unwrap().status(), 503);
        assert_eq!(
            server.requests().len(),
            4,
            "the first try and three retries"
        );
    }

    #[tokio::test]
    async fn a_server_error_that_passes_costs_one_retry_after_a_backoff() {
        let tries = AtomicUsize::new(0);
        let server = ScriptedServer::start(move |_| match tries.fetch_add(1, Ordering::SeqCst) {
            0 => Answer::status(500),
            _ => Answer::status(200).body("ok"),
        });
        let reg = connect(&server.host, None).await;
        let started = Instant::now();
        let resp = get(&reg).await;
        assert_eq!(resp.unwrap().status(), 200);
        assert_eq!(server.requests().len(), 2);
        assert!(started.elapsed() >= backoff(0), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn rate_limits_are_retried_then_reported_with_their_wait() {
        let server = always(429, &[("Retry-After", "0")]);
        let reg = connect(&server.host, None).await;
        let e = get(&reg).await.unwrap_err();
        assert!(
            matches!(
                e,
                RegistryError::RateLimited {
                    retry_after: Some(0),
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.is_retryable());
        assert_eq!(server.requests().len(), 4);
    }

    #[tokio::test]
    async fn a_retry_after_longer_than_10_s_is_not_waited_for() {
        let server = always(429, &[("Retry-After", "11")]);
        let reg = connect(&server.host, None).await;
        let started = Instant::now();
        let e = get(&reg).await.unwrap_err();
        assert!(
            matches!(
                e,
                RegistryError::RateLimited {
                    retry_after: Some(11),
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(server.requests().len(), 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn only_requests_that_can_be_sent_again_are_retried() {
        let server = always(503, &[("Retry-After", "0")]);
        let reg = connect(&server.host, None).await;
        let mut upload = request(Method::PUT, "/v2/a/b/blobs/uploads/1");
        upload.body = Some(bytes::Bytes::from_static(b"blob"));
        let cases = [
            (request(Method::POST, "/v2/a/b/blobs/uploads/"), 1),
            (request(Method::PATCH, "/v2/a/b/blobs/uploads/1"), 1),
            (upload, 4),
            (request(Method::DELETE, "/v2/a/b/manifests/1"), 4),
        ];
        for (req, tries) in cases {
            let before = server.requests().len();
            let resp = reg.send(&req).await.unwrap();
            assert_eq!(resp.status(), 503);
            assert_eq!(server.requests().len() - before, tries, "{}", req.method);
        }
    }

    #[tokio::test]
    async fn client_errors_are_returned_at_once() {
        for status in [400, 403, 404, 405] {
            let server = always(status, &[]);
            let reg = connect(&server.host, None).await;
            let resp = get(&reg).await.unwrap();
            assert_eq!(resp.status(), status);
            assert_eq!(server.requests().len(), 1, "{status}");
        }
    }

    /// A refused connection is retried after 0.2, 0.4 and 0.8 s, then reported.
    #[tokio::test]
    async fn refused_connections_are_retried_three_times_with_backoff() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let reg = connect(&format!("127.0.0.1:{port}"), None).await;
        let started = Instant::now();
        let e = get(&reg).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(e, RegistryError::Network { .. }), "{e}");
        assert!(e.is_retryable());
        let waits = backoff(0) + backoff(1) + backoff(2);
        assert!(
            took >= waits && took < waits + backoff(3),
            "{took:?}: three retries wait {waits:?}"
        );
    }

    /// A registry asking for `Basic`: the credentials are sent once asked for, then with
    /// every request.
    #[tokio::test]
    async fn a_basic_challenge_is_answered_with_the_credentials_then_they_go_up_front() {
        let server = ScriptedServer::start(|r| match r.header("authorization") {
            Some(a) if a == basic("u", "p") => Answer::status(200),
            _ => Answer::status(401).header("WWW-Authenticate", "Basic realm=\"registry\""),
        });
        let reg = connect(&server.host, user()).await;
        let req = request(Method::GET, "/v2/a/b/manifests/1");
        assert_eq!(reg.send(&req).await.unwrap().status(), 200);
        assert_eq!(reg.send(&req).await.unwrap().status(), 200);
        let auths: Vec<Option<String>> = server
            .requests()
            .iter()
            .map(|r| r.header("authorization").map(str::to_owned))
            .collect();
        assert_eq!(auths, [None, Some(basic("u", "p")), Some(basic("u", "p"))]);
    }

    #[tokio::test]
    async fn without_credentials_a_challenge_asks_for_a_login() {
        let server = always(401, &[("WWW-Authenticate", "Basic realm=\"registry\"")]);
        let reg = connect(&server.host, None).await;
        let e = get(&reg).await.unwrap_err();
        assert!(
            matches!(&e, RegistryError::Unauthorized { message, .. } if message.contains("berth login")),
            "{e}"
        );
        assert!(!e.is_retryable());
    }

    #[tokio::test]
    async fn wrong_credentials_are_refused_after_one_answer() {
        let server = always(401, &[("WWW-Authenticate", "Basic realm=\"registry\"")]);
        let wrong = Credentials {
            username: "u".into(),
            secret: "wrong-pw-4242".into(),
        };
        let reg = connect(&server.host, Some(wrong)).await;
        let e = get(&reg).await.unwrap_err();
        assert!(
            matches!(&e, RegistryError::Unauthorized { message, .. } if message.contains("refused the credentials")),
            "{e}"
        );
        assert!(!format!("{e} {e:?}").contains("wrong-pw-4242"));
        assert_eq!(server.requests().len(), 2);
    }

    /// A token registry on one port, its token service (the realm it names) on another: the
    /// token is asked for with the service and the scopes, with the credentials (the realm
    /// is the one other origin they go to), and is used until it expires.
    #[tokio::test]
    async fn a_bearer_challenge_is_answered_with_a_token_for_the_scopes_and_it_is_kept() {
        let tokens = ScriptedServer::start(|r| {
            if r.header("authorization") == Some(basic("u", "p").as_str()) {
                Answer::status(200).body(r#"{"token":"T1","expires_in":300}"#)
            } else {
                Answer::status(401)
            }
        });
        let realm = format!("http://{}/token", tokens.host);
        let challenge = format!("Bearer realm=\"{realm}\",service=\"svc\",scope=\"{SCOPE}\"");
        let server = ScriptedServer::start(move |r| match r.header("authorization") {
            Some("Bearer T1") => Answer::status(200),
            _ => Answer::status(401).header("WWW-Authenticate", &challenge),
        });
        let reg = connect(&server.host, user()).await;
        let req = request(Method::GET, "/v2/a/b/manifests/1");
        for _ in 0..3 {
            assert_eq!(reg.send(&req).await.unwrap().status(), 200);
        }
        let asked = tokens.requests();
        assert_eq!(asked.len(), 1, "one token for three requests");
        let url = Url::parse(&format!("http://x{}", asked[0].path)).unwrap();
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            query,
            [
                ("service".to_owned(), "svc".to_owned()),
                ("scope".to_owned(), SCOPE.to_owned())
            ]
        );
        assert_eq!(
            server.requests().len(),
            4,
            "one 401, then the token three times"
        );
        assert!(
            server
                .requests()
                .iter()
                .all(|r| r.header("authorization") != Some(basic("u", "p").as_str())),
            "the password never goes to the registry when it asks for a token"
        );
    }

    /// An identity token is exchanged through the OAuth2 refresh-token grant, in a form,
    /// never as a header.
    #[tokio::test]
    async fn an_identity_token_is_sent_in_a_refresh_token_grant() {
        let tokens = ScriptedServer::start(|_| Answer::status(200).body(r#"{"access_token":"A"}"#));
        let challenge = format!(
            "Bearer realm=\"http://{}/token\",service=\"svc\"",
            tokens.host
        );
        let server = ScriptedServer::start(move |r| match r.header("authorization") {
            Some("Bearer A") => Answer::status(200),
            _ => Answer::status(401).header("WWW-Authenticate", &challenge),
        });
        let identity = Credentials {
            username: "<token>".into(),
            secret: "refresh-me".into(),
        };
        let reg = connect(&server.host, Some(identity)).await;
        let resp = get(&reg).await;
        assert_eq!(resp.unwrap().status(), 200);
        let asked = &tokens.requests()[0];
        assert_eq!(asked.method, "POST");
        assert_eq!(asked.header("authorization"), None);
        let body = String::from_utf8(asked.body.clone()).unwrap();
        let form: Vec<(String, String)> = Url::parse(&format!("http://x/?{body}"))
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        for pair in [
            ("grant_type", "refresh_token"),
            ("refresh_token", "refresh-me"),
            ("client_id", "berth"),
            ("service", "svc"),
            ("scope", SCOPE),
        ] {
            assert!(
                form.contains(&(pair.0.to_owned(), pair.1.to_owned())),
                "{pair:?} in {form:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_token_answer_without_a_token_is_a_protocol_error() {
        for body in ["{}", r#"{"token":""}"#, "not json"] {
            let tokens = ScriptedServer::start(move |_| Answer::status(200).body(body));
            let challenge = format!("Bearer realm=\"http://{}/token\"", tokens.host);
            let server = ScriptedServer::start(move |_| {
                Answer::status(401).header("WWW-Authenticate", &challenge)
            });
            let reg = connect(&server.host, None).await;
            let e = get(&reg).await.unwrap_err();
            assert!(matches!(e, RegistryError::Protocol { .. }), "{body}: {e}");
        }
    }

    /// A fresh token that still lacks the scope: the credentials may not do it.
    #[tokio::test]
    async fn insufficient_scope_after_a_fresh_token_is_denied() {
        let tokens = ScriptedServer::start(|_| Answer::status(200).body(r#"{"token":"T"}"#));
        let challenge = format!(
            "Bearer realm=\"http://{}/token\",scope=\"repository:a/b:push\",error=\"insufficient_scope\"",
            tokens.host
        );
        let server = ScriptedServer::start(move |_| {
            Answer::status(403).header("WWW-Authenticate", &challenge)
        });
        let reg = connect(&server.host, user()).await;
        let e = reg
            .send(&request(Method::PUT, "/v2/a/b/manifests/1"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, RegistryError::Denied { message, .. } if message.contains("to push to it") && message.contains("repository:a/b:push")),
            "{e}"
        );
        assert_eq!(server.requests().len(), 2);
        let asked = Url::parse(&format!("http://x{}", tokens.requests()[0].path)).unwrap();
        let scopes: Vec<String> = asked
            .query_pairs()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.into_owned())
            .collect();
        assert_eq!(
            scopes,
            [SCOPE, "repository:a/b:push"],
            "the scope asked for is added"
        );
    }

    /// A redirect to another origin (a blob on object storage) is followed without the
    /// registry's `Authorization`; one on the registry's own origin keeps it.
    #[tokio::test]
    async fn credentials_do_not_follow_a_redirect_to_another_origin() {
        let storage = ScriptedServer::start(|_| Answer::status(200).body("blob"));
        let elsewhere = format!("http://{}/blob", storage.host);
        let server =
            ScriptedServer::start(
                move |r| match (r.header("authorization"), r.path.as_str()) {
                    (None, _) => {
                        Answer::status(401).header("WWW-Authenticate", "Basic realm=\"r\"")
                    }
                    (Some(_), "/v2/a/b/blobs/own") => {
                        Answer::status(307).header("Location", "/v2/a/b/blobs/moved")
                    }
                    (Some(_), "/v2/a/b/blobs/other") => {
                        Answer::status(307).header("Location", &elsewhere)
                    }
                    (Some(_), _) => Answer::status(200),
                },
            );
        let reg = connect(&server.host, user()).await;
        for path in ["/v2/a/b/blobs/own", "/v2/a/b/blobs/other"] {
            let resp = reg.send(&request(Method::GET, path)).await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
        }
        let moved = server
            .requests()
            .into_iter()
            .find(|r| r.path == "/v2/a/b/blobs/moved")
            .expect("the same-origin redirect was followed");
        assert_eq!(
            moved.header("authorization"),
            Some(basic("u", "p").as_str())
        );
        let fetched = storage.requests();
        assert_eq!(fetched.len(), 1);
        assert_eq!(fetched[0].header("authorization"), None);
    }

    #[tokio::test]
    async fn a_redirect_loop_ends_after_10_hops() {
        let server = always(302, &[("Location", "/v2/a/b/manifests/1")]);
        let reg = connect(&server.host, None).await;
        let e = get(&reg).await.unwrap_err();
        assert!(
            matches!(&e, RegistryError::Protocol { message, .. } if message.contains("more than 10 redirects")),
            "{e}"
        );
        assert_eq!(server.requests().len(), 11);
    }

    /// A body (an upload, a token form with a secret) is never carried to another origin.
    #[tokio::test]
    async fn a_redirect_does_not_carry_a_body_to_another_origin() {
        let other = ScriptedServer::start(|_| Answer::status(201));
        let location = format!("http://{}/take", other.host);
        let server =
            ScriptedServer::start(move |_| Answer::status(307).header("Location", &location));
        let reg = connect(&server.host, None).await;
        let mut req = request(Method::PUT, "/v2/a/b/blobs/uploads/1");
        req.body = Some(bytes::Bytes::from_static(b"secret body"));
        let e = reg.send(&req).await.unwrap_err();
        assert!(
            matches!(&e, RegistryError::Protocol { message, .. } if message.contains("another origin")),
            "{e}"
        );
        assert!(other.requests().is_empty());
    }

    /// A URL the registry hands back with a scheme other than http(s), or with a user
    /// name in it, is refused before anything is sent.
    #[tokio::test]
    async fn hostile_redirects_are_refused() {
        for location in [
            "file:///etc/passwd",
            "http://user:pw@127.0.0.1:1/x",
            "ftp://127.0.0.1/x",
        ] {
            let server =
                ScriptedServer::start(move |_| Answer::status(302).header("Location", location));
            let reg = connect(&server.host, None).await;
            let e = get(&reg).await.unwrap_err();
            assert!(matches!(e, RegistryError::Url { .. }), "{location}: {e}");
            assert!(!e.to_string().contains("pw"), "{e}");
        }
    }

    #[test]
    fn loopback_registries_may_use_plain_http_and_no_others() {
        let o = Options {
            certs_dirs: Vec::new(),
            ..Options::default()
        };
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.1.2.3:80",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(o.is_insecure(host), "{host}");
        }
        for host in [
            "localhost.example.com",
            "127.0.0.1.nip.io",
            "10.0.0.1:5000",
            "[::2]:5000",
            "reg.example:5000",
            "docker.io",
        ] {
            assert!(!o.is_insecure(host), "{host}");
        }
        let named = Options {
            insecure: vec!["reg.example:5000".into()],
            ..o.clone()
        };
        assert!(named.is_insecure("reg.example:5000"));
        assert!(!named.is_insecure("reg.example:5001"));
        assert!(!named.is_insecure("reg.example"));
        let unverified = Options {
            tls_verify: false,
            ..o
        };
        assert!(unverified.is_insecure("reg.example"));
    }

    #[test]
    fn docker_hub_is_served_from_its_api_host() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("ghcr.io"), "ghcr.io");
        assert_eq!(api_host("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(
            form_encode(&[("scope", "repository:a/b:pull,push"), ("x", "a b&c=d+e")]),
            "scope=repository%3Aa%2Fb%3Apull%2Cpush&x=a+b%26c%3Dd%2Be"
        );
    }
}
