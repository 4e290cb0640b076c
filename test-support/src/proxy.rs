//! An HTTP/1.1 proxy for registry tests that answers chosen requests itself with an error
//! (a 503, a 429 with `Retry-After`, …) instead of passing them on, so retries and resumes
//! are tested against the real registry behind it. Requests are read one by one from each
//! client connection (their bodies by `Content-Length` or chunked encoding); responses pass
//! through unparsed, which is safe because HTTP/1.1 clients wait for a response before they
//! send the next request on a connection. A connection that does not start with an HTTP
//! method (a TLS handshake) passes through whole.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// An answer given instead of the registry's, to `times` requests whose request line
/// (`METHOD PATH HTTP/1.1`) matches `method` and contains `path_part`, after `skip` such
/// requests have passed.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: &'static str,
    pub path_part: &'static str,
    /// The status line's code and reason and any headers, e.g.
    /// `"429 Too Many Requests\r\nRetry-After: 1"`.
    pub answer: &'static str,
    pub times: usize,
    pub skip: usize,
}

#[derive(Debug)]
pub struct FaultProxy {
    /// `127.0.0.1:PORT`.
    pub host: String,
    seen: Arc<Mutex<Vec<String>>>,
    forwarded: Arc<std::sync::atomic::AtomicU64>,
}

impl FaultProxy {
    pub fn start(target: String, faults: Vec<Fault>) -> FaultProxy {
        FaultProxy::with_rate(target, faults, None)
    }

    /// Bytes passed on towards clients so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// As [`FaultProxy::start`], with responses slowed to about `bytes_per_sec` per
    /// connection (a slow network, to act in the middle of a transfer).
    pub fn with_rate(target: String, faults: Vec<Fault>, bytes_per_sec: Option<u64>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let forwarded = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let faults = Arc::new(Mutex::new(faults));
        let (seen2, forwarded2) = (seen.clone(), forwarded.clone());
        crate::serve_each(listener, move |client| {
            let _ = serve(client, &target, &faults, &seen2, &forwarded2, bytes_per_sec);
        });
        FaultProxy {
            host,
            seen,
            forwarded,
        }
    }

    /// Every request line seen, with `(injected)` after the ones answered by a fault.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(
    client: TcpStream,
    target: &str,
    faults: &Mutex<Vec<Fault>>,
    seen: &Mutex<Vec<String>>,
    forwarded: &Arc<std::sync::atomic::AtomicU64>,
    bytes_per_sec: Option<u64>,
) -> std::io::Result<()> {
    let server = TcpStream::connect(target)?;
    let mut from_server = server.try_clone()?;
    let mut to_client = client.try_clone()?;
    let forwarded = forwarded.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 << 10];
        let started = std::time::Instant::now();
        let mut sent = 0u64;
        loop {
            let n = match from_server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if to_client.write_all(&buf[..n]).is_err() {
                break;
            }
            sent += n as u64;
            forwarded.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
            if let Some(rate) = bytes_per_sec {
                let due = std::time::Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        let _ = to_client.shutdown(Shutdown::Write);
    });
    let mut reader = BufReader::new(client.try_clone()?);
    let mut to_server = server;
    let first = reader.fill_buf()?;
    if first.is_empty() || !first[0].is_ascii_uppercase() {
        std::io::copy(&mut reader, &mut to_server)?;
        return Ok(());
    }
    loop {
        let mut head = Vec::new();
        let mut line = String::new();
        let mut request_line = String::new();
        let (mut length, mut chunked) = (0usize, false);
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if request_line.is_empty() {
                request_line = line.trim_end().to_owned();
            }
            head.extend_from_slice(line.as_bytes());
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size_line = String::new();
                reader.read_line(&mut size_line)?;
                body.extend_from_slice(size_line.as_bytes());
                let size =
                    usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                        .unwrap_or(0);
                let mut chunk = vec![0u8; size + 2];
                reader.read_exact(&mut chunk)?;
                body.extend_from_slice(&chunk);
                if size == 0 {
                    break;
                }
            }
        } else {
            body.resize(length, 0);
            reader.read_exact(&mut body)?;
        }
        let injected = {
            let mut faults = faults.lock().unwrap();
            faults
                .iter_mut()
                .find(|f| {
                    f.times > 0
                        && request_line.starts_with(&format!("{} ", f.method))
                        && request_line.contains(f.path_part)
                })
                .and_then(|f| {
                    if f.skip > 0 {
                        f.skip -= 1;
                        return None;
                    }
                    f.times -= 1;
                    Some(f.answer)
                })
        };
        match injected {
            Some(answer) => {
                seen.lock()
                    .unwrap()
                    .push(format!("{request_line} (injected)"));
                let mut client = client.try_clone()?;
                write!(
                    client,
                    "HTTP/1.1 {answer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )?;
                let _ = client.shutdown(Shutdown::Both);
                let _ = to_server.shutdown(Shutdown::Both);
                return Ok(());
            }
            None => {
                seen.lock().unwrap().push(request_line);
                to_server.write_all(&head)?;
                to_server.write_all(&body)?;
            }
        }
    }
}

/// A change a [`RewritingProxy`] makes to the registry's answers: for requests whose
/// request line contains `path_part`, the URL in the response header `header` (`Link` or
/// `Location`) gets `origin` (`scheme://host:port`, or `""` to leave it relative) instead
/// of its own. A `Link` the registry did not send is added, pointing at the request's own
/// path and query: a next page that is the same page.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub path_part: &'static str,
    pub header: &'static str,
    pub origin: String,
}

/// A proxy in front of a registry that rewrites URLs in its answers (a hostile registry
/// made from a real one). With a TLS identity it speaks HTTPS to its clients (the registry
/// behind it stays plain HTTP), and a plain-HTTP connection to its port is not passed on but
/// recorded, as a [`Recorder`] records it: the same host and port with another scheme.
#[derive(Debug)]
pub struct RewritingProxy {
    /// `127.0.0.1:PORT`.
    pub host: String,
    plain: Arc<Mutex<Vec<String>>>,
    certs: Option<(tempfile::TempDir, String)>,
}

impl RewritingProxy {
    pub fn start(target: String, rewrites: Vec<Rewrite>, tls: bool) -> RewritingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        RewritingProxy::on(listener, target, rewrites, tls)
    }

    /// As [`RewritingProxy::start`], on a listener the test chose.
    pub fn on(
        listener: TcpListener,
        target: String,
        rewrites: Vec<Rewrite>,
        tls: bool,
    ) -> RewritingProxy {
        let host = listener.local_addr().unwrap().to_string();
        let plain = Arc::new(Mutex::new(Vec::new()));
        let mut certs = None;
        let mut server_config = None;
        if tls {
            let (config, ca_pem) = tls_identity();
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join(&host)).unwrap();
            std::fs::write(dir.path().join(&host).join("ca.crt"), &ca_pem).unwrap();
            certs = Some((dir, ca_pem));
            server_config = Some(Arc::new(config));
        }
        let rewrites = Arc::new(rewrites);
        let plain2 = plain.clone();
        crate::serve_each(listener, move |client| {
            let _ = serve_rewriting(client, &target, &rewrites, &plain2, server_config.clone());
        });
        RewritingProxy { host, plain, certs }
    }

    /// The request heads that reached the TLS port over plain HTTP.
    pub fn plain_requests(&self) -> Vec<String> {
        self.plain.lock().unwrap().clone()
    }

    /// A certs.d-style directory with the proxy's CA (TLS only), for `BERTH_CERTS_DIR`.
    pub fn certs_dir(&self) -> Option<std::path::PathBuf> {
        self.certs.as_ref().map(|(d, _)| d.path().to_owned())
    }
}

/// A server config for 127.0.0.1 signed by a fresh CA, and that CA's PEM.
fn tls_identity() -> (rustls::ServerConfig, String) {
    let ca = crate::certs::TestCa::new("berth test proxy CA");
    let (cert, key) = ca.server_cert();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    (config, ca.cert.pem())
}

fn serve_rewriting(
    client: TcpStream,
    target: &str,
    rewrites: &[Rewrite],
    plain: &Mutex<Vec<String>>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let Some(config) = tls else {
        return relay(BufReader::new(client), target, rewrites, false);
    };
    let mut first = [0u8; 1];
    if client.peek(&mut first)? == 1 && first[0].is_ascii_uppercase() {
        // Plain HTTP on the TLS port: recorded, never passed on.
        return record(client, plain);
    }
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    relay(
        BufReader::new(rustls::StreamOwned::new(conn, client)),
        target,
        rewrites,
        true,
    )
}

/// Passes requests on one by one, and their answers back with the rewrites applied. Behind
/// TLS, the registry is told so (`X-Forwarded-Proto`), so the URLs it writes say `https`.
fn relay<S: Read + Write>(
    mut client: BufReader<S>,
    target: &str,
    rewrites: &[Rewrite],
    tls: bool,
) -> std::io::Result<()> {
    let server = TcpStream::connect(target)?;
    let mut to_server = server.try_clone()?;
    let mut from_server = BufReader::new(server);
    loop {
        let Some((request_line, head, body)) = read_message(&mut client, None)? else {
            return Ok(());
        };
        match head.iter().position(|b| *b == b'\n') {
            Some(end) if tls => {
                to_server.write_all(&head[..=end])?;
                to_server.write_all(b"X-Forwarded-Proto: https\r\n")?;
                to_server.write_all(&head[end + 1..])?;
            }
            _ => to_server.write_all(&head)?,
        }
        to_server.write_all(&body)?;
        let head_only = request_line.starts_with("HEAD ");
        let Some((_, head, body)) = read_message(&mut from_server, Some(head_only))? else {
            return Ok(());
        };
        let head = rewrite_head(&String::from_utf8_lossy(&head), &request_line, rewrites);
        let out = client.get_mut();
        out.write_all(head.as_bytes())?;
        out.write_all(&body)?;
        out.flush()?;
    }
}

/// An HTTP/1.1 message: its first line, its head as sent, its body.
type Message = (String, Vec<u8>, Vec<u8>);

/// One HTTP/1.1 message: its first line, its head as sent and its body. `response` is
/// `Some(head_only)` for a response (no body after a HEAD, a 204 or a 304; until the end of
/// the connection when it has neither a length nor chunks).
fn read_message(
    reader: &mut impl BufRead,
    response: Option<bool>,
) -> std::io::Result<Option<Message>> {
    let mut head = Vec::new();
    let mut first = String::new();
    let (mut length, mut chunked) = (None, false);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if first.is_empty() {
            first = line.trim_end().to_owned();
        }
        head.extend_from_slice(line.as_bytes());
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = Vec::new();
    let no_body = response
        .is_some_and(|head_only| head_only || first.contains(" 204 ") || first.contains(" 304 "));
    if no_body {
    } else if chunked {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            body.extend_from_slice(size_line.as_bytes());
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    } else if response.is_some() {
        reader.read_to_end(&mut body)?;
    }
    Ok(Some((first, head, body)))
}

fn rewrite_head(head: &str, request_line: &str, rewrites: &[Rewrite]) -> String {
    let mut lines: Vec<String> = head
        .trim_end_matches("\r\n")
        .split("\r\n")
        .map(str::to_owned)
        .collect();
    let request_target = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
    for r in rewrites
        .iter()
        .filter(|r| request_line.contains(r.path_part))
    {
        let prefix = format!("{}:", r.header.to_ascii_lowercase());
        let found = lines
            .iter()
            .position(|l| l.to_ascii_lowercase().starts_with(&prefix));
        let value = found.map(|i| lines[i][prefix.len()..].trim().to_owned());
        let linked = r.header.eq_ignore_ascii_case("link");
        let url = match &value {
            Some(v) if linked => v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned(),
            Some(v) => v.clone(),
            None => request_target.clone(),
        };
        let path = match url.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]).to_owned(),
            None => url,
        };
        let new = if linked {
            format!("{}: <{}{path}>; rel=\"next\"", r.header, r.origin)
        } else {
            format!("{}: {}{path}", r.header, r.origin)
        };
        match found {
            Some(i) => lines[i] = new,
            None if linked => lines.push(new),
            None => {}
        }
    }
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

/// A listener that stands for another origin: it records the head of every request it gets
/// (so a test can see whether an `Authorization` header came) and answers each with an empty
/// tag list, then closes the connection.
#[derive(Debug)]
pub struct Recorder {
    /// `ADDR:PORT`.
    pub host: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    /// On `addr` (`127.0.0.2:0`, or a port chosen to match another listener's).
    pub fn start(addr: &str) -> std::io::Result<Recorder> {
        let listener = TcpListener::bind(addr)?;
        let host = listener.local_addr()?.to_string();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let heads2 = heads.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let heads = heads2.clone();
                std::thread::spawn(move || {
                    let _ = record(client, &heads);
                });
            }
        });
        Ok(Recorder { host, heads })
    }

    /// Every request head received, in order.
    pub fn requests(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn record(client: TcpStream, heads: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    heads.lock().unwrap().push(head);
    let body = br#"{"name":"elsewhere","tags":["from-another-origin"]}"#;
    let mut out = client;
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    out.write_all(body)?;
    let _ = out.shutdown(Shutdown::Write);
    Ok(())
}
