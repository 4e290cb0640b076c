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
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (target, faults, seen, forwarded) = (
                    target.clone(),
                    faults.clone(),
                    seen2.clone(),
                    forwarded2.clone(),
                );
                std::thread::spawn(move || {
                    let _ = serve(client, &target, &faults, &seen, &forwarded, bytes_per_sec);
                });
            }
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
