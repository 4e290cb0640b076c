//! `ADD http(s)://` for the builder (which has no HTTP client of its own).

use std::io::Write;
use std::path::PathBuf;

use berth_builder::exec::{Fetch, FetchError};

/// `ADD http(s)://`: a plain GET, streamed into the file. HTTPS trusts the system's roots
/// plus the CAs of the host's certs.d directory, the same place as for registries
/// (`/etc/docker/certs.d/<host[:port]>/*.crt`, `BERTH_CERTS_DIR`).
#[derive(Debug)]
pub struct Download {
    pub certs_dirs: Vec<PathBuf>,
}

impl Fetch for Download {
    fn fetch(&self, url: &str, out: &mut dyn Write) -> Result<Option<i64>, FetchError> {
        // Every message names the URL without its credentials (reqwest's errors name it too).
        let redact = |m: String| berth_builder::redact::url_credentials(&m).into_owned();
        crate::block_on(async {
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("ADD {url}: {e}"))?;
            let host = match (parsed.host_str(), parsed.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                (None, _) => String::new(),
            };
            let (tls, _) =
                berth_registry_client::tls::client_config(&host, &self.certs_dirs, true)?;
            let client = reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())?;
            let mut resp = client.get(url).send().await.map_err(|e| {
                format!(
                    "ADD {url}: {}",
                    berth_registry_client::client::network_error(&host, &e)
                )
            })?;
            if !resp.status().is_success() {
                return Err(format!("ADD {url}: the server answered {}", resp.status()));
            }
            let modified = resp
                .headers()
                .get(reqwest::header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .and_then(httpdate)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            while let Some(chunk) = resp.chunk().await.map_err(|e| format!("ADD {url}: {e}"))? {
                out.write_all(&chunk)
                    .map_err(|e| format!("ADD {url}: {e}"))?;
            }
            Ok(modified)
        })
        .map_err(|m| redact(m).into())
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110's IMF-fixdate).
fn httpdate(s: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)?
        + 1;
    humantime::parse_rfc3339(&format!("{year}-{month:02}-{day:0>2}T{time}Z")).ok()
}
