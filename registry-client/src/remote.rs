//! A repository on a registry as an [`ImageSource`] (pull) and an [`ImageDestination`]
//! (push), so `pull` is `copy_image(remote, store)` and `push` the reverse.
//!
//! - Manifests by tag or digest with the right `Accept`; the body read is bounded; its
//!   digest checked against the digest asked for, or against `Docker-Content-Digest`.
//! - Blobs stream; the destination verifies them. A dropped download is resumed with a
//!   `Range` request from the byte reached (at most 3 times).
//! - Pushes: `HEAD` skips blobs the registry has; a blob known to be in another repository of
//!   the same registry is mounted (`?mount=&from=`; a `202` means "upload it after all");
//!   uploads are one `POST` and one streamed `PUT`, or, for blobs above 64 MiB, `PATCH`
//!   chunks of 8 MiB (a failed chunk is resumed from the registry's upload status); manifests are `PUT` as their exact bytes with their media type.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use berth_oci::limits;
use berth_oci::manifest::{Descriptor, Parsed};
use berth_oci::transport::{BlobReader, ImageDestination, ImageSource, TransportError};
use berth_oci::{Digest, media_type};
use futures_util::Stream;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LOCATION, RANGE};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncRead, ReadBuf};

use crate::client::{Registry, Request, read_limited};
use crate::error::RegistryError;

/// Blobs larger than this are uploaded in chunks.
const CHUNKED_ABOVE: u64 = 64 << 20;
/// 8 MiB: two are held while one is sent and the next is read (see `send_chunks`). Bigger
/// chunks save docker-registry a few fsyncs per chunk, but little time: W4 4.8-5.3 s with
/// 16 MiB chunks against 5.0-5.5 s with 8 MiB, and a single streamed PATCH of the whole
/// blob 4.4-5.3 s; the memory they take (twice the chunk) is better left to the compressor.
const CHUNK: usize = 8 << 20;
/// How many times a failed chunk is resumed before the push gives up.
const UPLOAD_RETRIES: u32 = 3;

/// One repository and a reference in it (a tag or a digest).
#[derive(Debug, Clone)]
pub struct Remote {
    pub registry: Arc<Registry>,
    /// `library/busybox`.
    pub repository: String,
    /// A tag or `sha256:...`.
    pub reference: String,
    /// Another repository of the same registry that holds the blobs (cross-repository
    /// mount on push).
    pub mount_from: Option<String>,
}

impl Remote {
    pub fn new(registry: Arc<Registry>, repository: &str, reference: &str) -> Remote {
        Remote {
            registry,
            repository: repository.to_owned(),
            reference: reference.to_owned(),
            mount_from: None,
        }
    }

    fn pull_scope(&self) -> Vec<String> {
        vec![format!("repository:{}:pull", self.repository)]
    }

    fn push_scope(&self) -> Vec<String> {
        let mut s = vec![format!("repository:{}:pull,push", self.repository)];
        if let Some(from) = &self.mount_from {
            s.push(format!("repository:{from}:pull"));
        }
        s
    }

    fn request(&self, method: Method, path: String, what: &str, push: bool) -> Request {
        let mut r = Request::new(method, path, &self.repository, what);
        r.scopes = if push {
            self.push_scope()
        } else {
            self.pull_scope()
        };
        r
    }

    /// A manifest or index by tag or digest, verified.
    pub async fn get_manifest(&self, reference: &str) -> Result<Parsed, RegistryError> {
        let mut req = self.request(
            Method::GET,
            format!("/v2/{}/manifests/{reference}", self.repository),
            &format!("manifest {reference}"),
            false,
        );
        req.headers.insert(
            ACCEPT,
            HeaderValue::from_str(&media_type::MANIFEST_ACCEPT.join(", ")).expect("ASCII"),
        );
        let resp = self.registry.send(&req).await?;
        if !resp.status().is_success() {
            return Err(self.registry.status_error(&req, resp).await);
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned());
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<Digest>().ok());
        let bytes = read_limited(&self.registry.name, resp, limits::MAX_MANIFEST).await?;
        let parsed =
            Parsed::parse(bytes, content_type.as_deref()).map_err(|e| RegistryError::Protocol {
                registry: self.registry.name.clone(),
                message: format!("{}: manifest {reference}: {e}", self.repository),
            })?;
        let expected = reference.parse::<Digest>().ok().or(header_digest);
        if let Some(expected) = expected
            && expected != parsed.digest
        {
            return Err(RegistryError::DigestMismatch {
                registry: self.registry.name.clone(),
                repository: self.repository.clone(),
                what: format!("manifest {reference}"),
                expected,
                found: parsed.digest,
            });
        }
        Ok(parsed)
    }

    /// The tags of the repository, following `Link` pagination: each next page is a URL
    /// the registry handed back, resolved and checked by [`crate::origin`] (another origin
    /// gets no credentials). A page seen before, more than [`limits::MAX_TAG_PAGES`] pages
    /// or [`limits::MAX_TAGS`] tags, and a tag that is not a valid tag name are errors.
    pub async fn tags(&self) -> Result<Vec<String>, RegistryError> {
        let protocol = |message: String| RegistryError::Protocol {
            registry: self.registry.name.clone(),
            message: format!("{}: tag list: {message}", self.repository),
        };
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut url = self
            .registry
            .resolve(
                None,
                &format!("/v2/{}/tags/list?n=1000", self.repository),
                "tags",
            )?
            .to_string();
        loop {
            if !seen.insert(url.clone()) {
                return Err(protocol(format!(
                    "the registry links back to a page it already sent (after {} pages)",
                    seen.len()
                )));
            }
            if seen.len() > limits::MAX_TAG_PAGES {
                return Err(protocol(format!(
                    "more than {} pages: refused",
                    limits::MAX_TAG_PAGES
                )));
            }
            let req = self.request(Method::GET, url.clone(), "tags", false);
            let resp = self.registry.send(&req).await?;
            if !resp.status().is_success() {
                return Err(self.registry.status_error(&req, resp).await);
            }
            let next = match next_link(resp.headers()) {
                Some(n) => Some(
                    self.registry
                        .resolve(Some(resp.url()), &n, "the tags Link")?,
                ),
                None => None,
            };
            let body = read_limited(&self.registry.name, resp, limits::MAX_TAG_PAGE).await?;
            #[derive(serde::Deserialize)]
            struct Tags {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let t: Tags =
                serde_json::from_slice(&body).map_err(|e| protocol(format!("unreadable: {e}")))?;
            for tag in t.tags.unwrap_or_default() {
                if !berth_oci::reference::is_valid_tag(&tag) {
                    let shown: String = tag.chars().take(40).collect();
                    return Err(protocol(format!("{shown:?} is not a valid tag name")));
                }
                if out.len() >= limits::MAX_TAGS {
                    return Err(protocol(format!(
                        "more than {} tags: refused",
                        limits::MAX_TAGS
                    )));
                }
                out.push(tag);
            }
            match next {
                Some(n) => url = n.to_string(),
                None => return Ok(out),
            }
        }
    }

    async fn blob_response(
        &self,
        desc: &Descriptor,
        from: u64,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut req = self.request(
            Method::GET,
            format!("/v2/{}/blobs/{}", self.repository, desc.digest),
            &format!("blob {}", desc.digest),
            false,
        );
        if from > 0 {
            req.headers.insert(
                RANGE,
                HeaderValue::from_str(&format!("bytes={from}-")).expect("ASCII"),
            );
        }
        let resp = self.registry.send(&req).await?;
        let ok = if from > 0 {
            resp.status() == StatusCode::PARTIAL_CONTENT
        } else {
            resp.status().is_success()
        };
        if !ok {
            return Err(self.registry.status_error(&req, resp).await);
        }
        Ok(resp)
    }

    /// Starts an upload; with a digest and a repository to mount from, asks for the mount
    /// first (`None`: mounted, nothing to send).
    async fn upload_location(
        &self,
        digest: Option<&Digest>,
    ) -> Result<Option<String>, RegistryError> {
        let mut path = format!("/v2/{}/blobs/uploads/", self.repository);
        if let (Some(from), Some(digest)) = (&self.mount_from, digest) {
            path.push_str(&format!("?mount={digest}&from={from}"));
        }
        let what = digest.map_or_else(|| "an upload".to_owned(), |d| format!("upload of {d}"));
        let mut req = self.request(Method::POST, path, &what, true);
        req.body = Some(bytes::Bytes::new());
        let resp = self.registry.send(&req).await?;
        match resp.status() {
            // Mounted from the other repository: nothing to upload.
            StatusCode::CREATED => Ok(None),
            StatusCode::ACCEPTED => {
                let base = resp.url().clone();
                let loc = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| RegistryError::Protocol {
                        registry: self.registry.name.clone(),
                        message: "an upload without a Location".into(),
                    })?
                    .to_owned();
                Ok(Some(self.absolute(&base, &loc)?))
            }
            _ => Err(self.registry.status_error(&req, resp).await),
        }
    }

    /// Mounts the blob `digest` from the repository `from` of the same registry (`true`), or
    /// finds it cannot (`false`: the upload the registry opened instead is cancelled).
    pub async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<bool, RegistryError> {
        let mounting = Remote {
            mount_from: Some(from.to_owned()),
            ..self.clone()
        };
        match mounting.upload_location(Some(digest)).await? {
            None => Ok(true),
            Some(location) => {
                let req = self.request(Method::DELETE, location, "a cancelled upload", true);
                let _ = self.registry.send(&req).await;
                Ok(false)
            }
        }
    }

    /// An upload `Location` from a response to `base`, resolved and checked.
    fn absolute(&self, base: &reqwest::Url, location: &str) -> Result<String, RegistryError> {
        Ok(self
            .registry
            .resolve(Some(base), location, "an upload Location")?
            .to_string())
    }

    fn with_digest(location: &str, digest: &Digest) -> String {
        let sep = if location.contains('?') { '&' } else { '?' };
        format!("{location}{sep}digest={digest}")
    }

    async fn streamed(
        &self,
        method: Method,
        url: String,
        body: reqwest::Body,
        len: u64,
        extra: &[(&str, String)],
    ) -> Result<reqwest::Response, RegistryError> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        for (k, v) in extra {
            let value = HeaderValue::from_str(v).map_err(|_| RegistryError::Protocol {
                registry: self.registry.name.clone(),
                message: format!("a {k} header that is not ASCII"),
            })?;
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                RegistryError::Protocol {
                    registry: self.registry.name.clone(),
                    message: format!("{k:?} is not a header name"),
                }
            })?;
            headers.insert(name, value);
        }
        self.registry
            .send_stream(method, &url, headers, body, &self.push_scope())
            .await
    }

    /// How many bytes of an upload the registry holds (its `Range: 0-END` header; the
    /// distribution spec's upload status), and the upload's location from now on.
    async fn upload_status(&self, location: &str) -> Result<(u64, String), RegistryError> {
        let req = self.request(Method::GET, location.to_owned(), "an upload's status", true);
        let resp = self.registry.send(&req).await?;
        if resp.status() != StatusCode::NO_CONTENT {
            return Err(self.registry.status_error(&req, resp).await);
        }
        let at = match resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
            Some(l) => self.absolute(resp.url(), l)?,
            None => location.to_owned(),
        };
        // `0-0` means nothing yet: distribution writes it for an empty upload too.
        let committed = resp
            .headers()
            .get("range")
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.split_once('-'))
            .and_then(|(_, end)| end.trim().parse::<u64>().ok())
            .map_or(0, |end| if end == 0 { 0 } else { end.saturating_add(1) });
        Ok((committed, at))
    }

    async fn upload(&self, desc: &Descriptor, mut reader: BlobReader) -> Result<(), RegistryError> {
        let Some(location) = self.upload_location(Some(&desc.digest)).await? else {
            return Ok(());
        };
        let what = format!("blob {}", desc.digest);
        let req = self.request(Method::PUT, location.clone(), &what, true);
        if desc.size <= CHUNKED_ABOVE {
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(reader));
            let resp = self
                .streamed(
                    Method::PUT,
                    Self::with_digest(&location, &desc.digest),
                    body,
                    desc.size,
                    &[],
                )
                .await?;
            if resp.status() != StatusCode::CREATED {
                return Err(self.registry.status_error(&req, resp).await);
            }
            return Ok(());
        }
        let location = self.send_chunks(location, &mut reader, &what).await?;
        self.finish_upload(&location, &desc.digest, &what).await
    }

    /// Uploads a blob whose digest is known only once it has been read to the end: a
    /// compressor's output, streamed as it is made (`push` of a layer compressed for the
    /// first time). `digest` resolves after the reader's end. No mount is tried: nothing can
    /// hold a blob not made yet.
    pub async fn upload_streamed(
        &self,
        mut reader: BlobReader,
        digest: impl std::future::Future<Output = Result<Digest, String>>,
    ) -> Result<Digest, RegistryError> {
        let what = "a layer being compressed".to_owned();
        let location =
            self.upload_location(None)
                .await?
                .ok_or_else(|| RegistryError::Protocol {
                    registry: self.registry.name.clone(),
                    message: "an upload answered as a mount".into(),
                })?;
        let location = self.send_chunks(location, &mut reader, &what).await?;
        let digest = digest.await.map_err(|message| RegistryError::Protocol {
            registry: self.registry.name.clone(),
            message: format!("compressing a layer: {message}"),
        })?;
        self.finish_upload(&location, &digest, &format!("blob {digest}"))
            .await?;
        Ok(digest)
    }

    /// The closing PUT of a chunked upload, naming the digest the registry must verify.
    async fn finish_upload(
        &self,
        location: &str,
        digest: &Digest,
        what: &str,
    ) -> Result<(), RegistryError> {
        let req = self.request(Method::PUT, location.to_owned(), what, true);
        let resp = self
            .streamed(
                Method::PUT,
                Self::with_digest(location, digest),
                reqwest::Body::from(Vec::new()),
                0,
                &[],
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.registry.status_error(&req, resp).await);
        }
        Ok(())
    }

    /// Sends `reader` in PATCH chunks of [`CHUNK`] bytes; returns the upload's location
    /// after the last one. The next chunk is read while the current one is sent, so a
    /// producer behind `reader` (a layer being compressed) and the registry work at the same
    /// time: sending and reading in turn made the W4 push take the sum of both, 4 s above
    /// what the registry alone needs. Two chunks are held at most.
    async fn send_chunks(
        &self,
        mut location: String,
        reader: &mut BlobReader,
        what: &str,
    ) -> Result<String, RegistryError> {
        let mut offset = 0u64;
        // The sent chunk's buffer is read into next (fresh pages cost a fault each, and
        // freed 8 MiB blocks linger in the allocator's per-thread arenas).
        let mut spare = Vec::new();
        let mut next = self.read_chunk(reader, Vec::new(), what).await?;
        while !next.is_empty() {
            let chunk = next;
            let n = chunk.len() as u64;
            let (sent, following) = tokio::join!(
                self.send_chunk(&mut location, chunk, offset, what),
                self.read_chunk(reader, std::mem::take(&mut spare), what)
            );
            spare = sent?.try_into_mut().map(Vec::from).unwrap_or_default();
            next = following?;
            offset += n;
        }
        Ok(location)
    }

    /// Up to [`CHUNK`] bytes of `reader`, read into `buf`; empty at its end.
    async fn read_chunk(
        &self,
        reader: &mut BlobReader,
        buf: Vec<u8>,
        what: &str,
    ) -> Result<bytes::Bytes, RegistryError> {
        use tokio::io::AsyncReadExt;
        let mut chunk = buf;
        chunk.resize(CHUNK, 0);
        let mut n = 0;
        while n < CHUNK {
            let k = reader
                .read(&mut chunk[n..])
                .await
                .map_err(|e| RegistryError::Protocol {
                    registry: self.registry.name.clone(),
                    message: format!("reading {what}: {e}"),
                })?;
            if k == 0 {
                break;
            }
            n += k;
        }
        chunk.truncate(n);
        Ok(bytes::Bytes::from(chunk))
    }

    /// PATCHes one chunk that starts at `offset` of the blob; updates `location` from the
    /// registry's answer and gives the chunk back. A failed PATCH (the connection dropped, a
    /// 5xx or 429) is resumed: the registry says how much of the upload it has, and the rest
    /// of the chunk goes again from there.
    async fn send_chunk(
        &self,
        location: &mut String,
        chunk: bytes::Bytes,
        offset: u64,
        what: &str,
    ) -> Result<bytes::Bytes, RegistryError> {
        let req = self.request(Method::PUT, location.clone(), what, true);
        let n = chunk.len();
        let mut from = 0usize;
        let mut failures = 0u32;
        while from < n {
            let range = format!("{}-{}", offset + from as u64, offset + n as u64 - 1);
            let sent = self
                .streamed(
                    Method::PATCH,
                    location.clone(),
                    reqwest::Body::from(chunk.slice(from..)),
                    (n - from) as u64,
                    &[("content-range", range)],
                )
                .await;
            let failure = match sent {
                Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                    if let Some(l) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                        *location = self.absolute(resp.url(), l)?;
                    }
                    return Ok(chunk);
                }
                Ok(resp)
                    if failures < UPLOAD_RETRIES
                        && (resp.status().is_server_error()
                            || resp.status() == StatusCode::TOO_MANY_REQUESTS) =>
                {
                    format!("{}", resp.status())
                }
                Ok(resp) => return Err(self.registry.status_error(&req, resp).await),
                Err(e) if failures < UPLOAD_RETRIES => e.to_string(),
                Err(e) => return Err(e),
            };
            failures += 1;
            tokio::time::sleep(crate::client::backoff(failures)).await;
            let (committed, at) = self.upload_status(location).await?;
            *location = at;
            let end = offset + n as u64;
            if committed < offset || committed > end {
                return Err(RegistryError::Protocol {
                    registry: self.registry.name.clone(),
                    message: format!(
                        "uploading {what}: after a failed chunk ({failure}) the registry holds {committed} bytes, outside this chunk ({offset}-{end})"
                    ),
                });
            }
            from = (committed - offset) as usize;
        }
        Ok(chunk)
    }

    async fn put_manifest_as(&self, reference: &str, m: &Parsed) -> Result<(), RegistryError> {
        let mut req = self.request(
            Method::PUT,
            format!("/v2/{}/manifests/{reference}", self.repository),
            &format!("manifest {reference}"),
            true,
        );
        req.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&m.media_type).map_err(|_| RegistryError::Protocol {
                registry: self.registry.name.clone(),
                message: "a media type that is not ASCII".into(),
            })?,
        );
        req.body = Some(bytes::Bytes::from(m.bytes.clone()));
        let resp = self.registry.send(&req).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.registry.status_error(&req, resp).await);
        }
        if let Some(d) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<Digest>().ok())
            && d != m.digest
        {
            return Err(RegistryError::DigestMismatch {
                registry: self.registry.name.clone(),
                repository: self.repository.clone(),
                what: format!("manifest {reference}"),
                expected: m.digest.clone(),
                found: d,
            });
        }
        Ok(())
    }
}

/// The URL of a `Link` header's first link (`<URL>; rel="next"`).
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    let url = link.split(';').next()?.trim();
    let url = url.strip_prefix('<')?.strip_suffix('>')?;
    (!url.is_empty()).then(|| url.to_owned())
}

type Reconnect =
    Pin<Box<dyn std::future::Future<Output = Result<reqwest::Response, RegistryError>> + Send>>;
type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// A blob download that resumes with `Range` after a dropped connection.
struct Download {
    remote: Remote,
    desc: Descriptor,
    offset: u64,
    retries: u32,
    stream: Option<ByteStream>,
    reconnect: Option<Reconnect>,
    pending: bytes::Bytes,
}

impl AsyncRead for Download {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending.split_to(n));
                this.offset += n as u64;
                return Poll::Ready(Ok(()));
            }
            if let Some(f) = this.reconnect.as_mut() {
                match f.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(resp)) => {
                        this.reconnect = None;
                        this.stream = Some(Box::pin(resp.bytes_stream()));
                    }
                    Poll::Ready(Err(e)) => {
                        this.reconnect = None;
                        return Poll::Ready(Err(std::io::Error::other(e.to_string())));
                    }
                }
            }
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            match stream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    if this.offset < this.desc.size && this.retries < 3 {
                        this.retries += 1;
                        this.start_reconnect();
                        continue;
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Some(Ok(b))) => this.pending = b,
                Poll::Ready(Some(Err(e))) => {
                    if this.retries < 3 {
                        this.retries += 1;
                        this.start_reconnect();
                        continue;
                    }
                    return Poll::Ready(Err(std::io::Error::other(e)));
                }
            }
        }
    }
}

impl Download {
    fn start_reconnect(&mut self) {
        self.stream = None;
        let remote = self.remote.clone();
        let desc = self.desc.clone();
        let from = self.offset;
        self.reconnect = Some(Box::pin(
            async move { remote.blob_response(&desc, from).await },
        ));
    }
}

impl ImageSource for Remote {
    fn describe(&self) -> String {
        format!(
            "docker://{}/{}:{}",
            self.registry.name, self.repository, self.reference
        )
    }

    async fn root_manifest(&self) -> Result<Parsed, TransportError> {
        Ok(self.get_manifest(&self.reference).await?)
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<Parsed, TransportError> {
        Ok(self.get_manifest(&desc.digest.to_string()).await?)
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobReader, TransportError> {
        let resp = self.blob_response(desc, 0).await?;
        Ok(Box::pin(Download {
            remote: self.clone(),
            desc: desc.clone(),
            offset: 0,
            retries: 0,
            stream: Some(Box::pin(resp.bytes_stream())),
            reconnect: None,
            pending: bytes::Bytes::new(),
        }))
    }
}

impl ImageDestination for Remote {
    fn describe(&self) -> String {
        format!(
            "docker://{}/{}:{}",
            self.registry.name, self.repository, self.reference
        )
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool, TransportError> {
        let req = self.request(
            Method::HEAD,
            format!("/v2/{}/blobs/{}", self.repository, desc.digest),
            &format!("blob {}", desc.digest),
            true,
        );
        let resp = self.registry.send(&req).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.registry.status_error(&req, resp).await.into()),
        }
    }

    async fn put_blob(&self, desc: &Descriptor, reader: BlobReader) -> Result<(), TransportError> {
        Ok(self.upload(desc, reader).await?)
    }

    async fn put_manifest(&self, manifest: &Parsed) -> Result<(), TransportError> {
        Ok(self
            .put_manifest_as(&manifest.digest.to_string(), manifest)
            .await?)
    }

    async fn commit(&self, root: &Parsed) -> Result<(), TransportError> {
        Ok(self.put_manifest_as(&self.reference, root).await?)
    }
}
