//! A hostile registry: a real `docker-registry` behind test-support's rewriting proxy, whose
//! answers point `Link` and upload `Location` URLs at other origins (another host, another
//! port, another scheme), where a recorder notes whether the registry's `Authorization`
//! came along; a `Link` that loops; and images too large to take (a manifest of 20,000
//! layers through `pull` and `load`). Nothing here needs root: no image is run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_test_support::{
    Recorder, RegistryConfig, Rewrite, RewritingProxy, Sandbox, TallImage, TestRegistry,
    assert_success,
};

const USER: &str = "hostile-user";
const PASSWORD: &str = "pw-never-elsewhere";

fn berth(s: &Sandbox, certs: Option<PathBuf>) -> Command {
    let mut c = s.cmd();
    c.env("DOCKER_CONFIG", s.path().join("docker-config"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("BERTH_INSECURE_REGISTRIES");
    match certs {
        Some(d) => c.env("BERTH_CERTS_DIR", d),
        None => c.env("BERTH_CERTS_DIR", s.path().join("no-certs")),
    };
    c
}

fn run(s: &Sandbox, certs: Option<PathBuf>, args: &[&str]) -> Output {
    berth(s, certs).args(args).output().unwrap()
}

fn ok(s: &Sandbox, certs: Option<PathBuf>, args: &[&str]) -> String {
    assert_success(&run(s, certs, args), &format!("berth {args:?}"))
}

/// A registry asking for a password, behind a proxy with `rewrites`; the image pushed and
/// the user logged in (through the proxy, as the registry berth knows).
fn basic_registry_behind(
    s: &Sandbox,
    rewrites: Vec<Rewrite>,
    listener: Option<TcpListener>,
    tls: bool,
) -> (TestRegistry, RewritingProxy) {
    let reg = TestRegistry::start(RegistryConfig {
        htpasswd: vec![(USER.into(), PASSWORD.into())],
        ..Default::default()
    });
    let listener = listener.unwrap_or_else(|| TcpListener::bind("127.0.0.1:0").unwrap());
    let proxy = RewritingProxy::on(listener, reg.host.clone(), rewrites, tls);
    let certs = proxy.certs_dir();
    ok(
        s,
        certs.clone(),
        &["login", "-u", USER, "-p", PASSWORD, &proxy.host],
    );
    (reg, proxy)
}

fn no_credentials_in(heads: &[String]) {
    for h in heads {
        assert!(
            !h.to_ascii_lowercase().contains("authorization:"),
            "credentials reached another origin:\n{h}"
        );
        assert!(!h.contains(PASSWORD));
    }
}

/// A listener on 127.0.0.1 and a recorder on 127.0.0.2 with the same port: two origins
/// that differ in their host alone.
fn same_port_on_two_hosts() -> (TcpListener, Recorder) {
    for _ in 0..20 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if let Ok(r) = Recorder::start(&format!("127.0.0.2:{port}")) {
            return (l, r);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

#[test]
fn a_tags_link_to_another_host_gets_no_credentials() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth")).with_busybox();
    let (listener, recorder) = same_port_on_two_hosts();
    let rewrites = vec![Rewrite {
        path_part: "/tags/list",
        header: "Link",
        origin: format!("http://{}", recorder.host),
    }];
    let (_reg, proxy) = basic_registry_behind(&s, rewrites, Some(listener), false);
    let repo = format!("{}/hostile/app", proxy.host);
    ok(&s, None, &["push", "-q", "busybox", &format!("{repo}:1")]);
    // Followed as Docker follows it: without the registry's credentials.
    let out = ok(&s, None, &["tags", &repo]);
    assert!(out.contains("from-another-origin"), "{out}");
    let heads = recorder.requests();
    assert!(!heads.is_empty(), "the link was not followed");
    no_credentials_in(&heads);
}

#[test]
fn a_tags_link_to_another_port_gets_no_credentials() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth")).with_busybox();
    let recorder = Recorder::start("127.0.0.1:0").unwrap();
    let rewrites = vec![Rewrite {
        path_part: "/tags/list",
        header: "Link",
        origin: format!("http://{}", recorder.host),
    }];
    let (_reg, proxy) = basic_registry_behind(&s, rewrites, None, false);
    let repo = format!("{}/hostile/app", proxy.host);
    ok(&s, None, &["push", "-q", "busybox", &format!("{repo}:1")]);
    let out = ok(&s, None, &["tags", &repo]);
    assert!(out.contains("from-another-origin"), "{out}");
    let heads = recorder.requests();
    assert!(!heads.is_empty(), "the link was not followed");
    no_credentials_in(&heads);
}

#[test]
fn a_tags_link_to_the_same_port_over_plain_http_is_refused() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth")).with_busybox();
    // The registry is reached over HTTPS (the proxy terminates TLS); the link names the
    // same host and port over http: another origin, and a downgrade.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let here = listener.local_addr().unwrap().to_string();
    let rewrites = vec![Rewrite {
        path_part: "/tags/list",
        header: "Link",
        origin: format!("http://{here}"),
    }];
    let (_reg, proxy) = basic_registry_behind(&s, rewrites, Some(listener), true);
    let certs = proxy.certs_dir();
    let repo = format!("{}/hostile/app", proxy.host);
    ok(
        &s,
        certs.clone(),
        &["push", "-q", "busybox", &format!("{repo}:1")],
    );
    let out = run(&s, certs, &["tags", &repo]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("plain HTTP"), "{stderr}");
    no_credentials_in(&proxy.plain_requests());
    assert!(proxy.plain_requests().is_empty());
}

#[test]
fn an_upload_location_on_another_host_gets_no_credentials() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth")).with_busybox();
    let (listener, recorder) = same_port_on_two_hosts();
    let rewrites = vec![Rewrite {
        path_part: "/blobs/uploads/",
        header: "Location",
        origin: format!("http://{}", recorder.host),
    }];
    let (_reg, proxy) = basic_registry_behind(&s, rewrites, Some(listener), false);
    // The recorder does not store the blob, so the push fails; what matters is what it got.
    let out = run(
        &s,
        None,
        &[
            "push",
            "-q",
            "busybox",
            &format!("{}/hostile/app:1", proxy.host),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let heads = recorder.requests();
    assert!(!heads.is_empty(), "the upload did not go to the Location");
    no_credentials_in(&heads);
}

#[test]
fn a_tags_link_to_a_non_http_scheme_or_with_userinfo_is_refused() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth")).with_busybox();
    for (origin, expected) in [
        ("ftp://127.0.0.2:21".to_owned(), "scheme"),
        ("http://user:pw@127.0.0.2:1".to_owned(), "user name"),
    ] {
        let rewrites = vec![Rewrite {
            path_part: "/tags/list",
            header: "Link",
            origin,
        }];
        let (_reg, proxy) = basic_registry_behind(&s, rewrites, None, false);
        let repo = format!("{}/hostile/app", proxy.host);
        ok(&s, None, &["push", "-q", "busybox", &format!("{repo}:1")]);
        let out = run(&s, None, &["tags", &repo]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}

/// Runs `cmd`, killing it after `limit`; `None` when it had to be killed.
fn run_bounded(mut cmd: Command, limit: Duration) -> Option<Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_tags_link_back_to_the_same_page_ends_with_an_error() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth")).with_busybox();
    let reg = TestRegistry::start(RegistryConfig::default());
    // Every tags page names itself (a relative URL) as the next one.
    let proxy = RewritingProxy::start(
        reg.host.clone(),
        vec![Rewrite {
            path_part: "/tags/list",
            header: "Link",
            origin: String::new(),
        }],
        false,
    );
    let repo = format!("{}/loop/app", proxy.host);
    ok(&s, None, &["push", "-q", "busybox", &format!("{repo}:1")]);
    let mut cmd = berth(&s, None);
    cmd.args(["tags", &repo]);
    let out = run_bounded(cmd, Duration::from_secs(60)).expect("berth tags never ended");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("page"), "{stderr}");
}

// --- resource bombs -------------------------------------------------------------------

/// A manifest of this many layers (one small layer, listed again and again) is a bomb.
const LAYERS: usize = 20_000;

/// One HTTP/1.1 request on a fresh connection: the status code and the `Location` header.
fn http(host: &str, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut c = TcpStream::connect(host).unwrap();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    c.write_all(body).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = answer
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    (status, location)
}

fn store_entries(s: &Sandbox, dir: &str) -> usize {
    std::fs::read_dir(s.store().join(dir)).map_or(0, |d| d.count())
}

fn assert_refused_at_once(s: &Sandbox, out: Output, took: Duration, before: (usize, usize)) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("20000 layers") && stderr.contains("limit"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        (
            store_entries(s, "snapshots"),
            store_entries(s, "blobs/sha256")
        ),
        before,
        "the refused image left something in the store"
    );
    s.assert_clean();
}

#[test]
fn a_manifest_of_20000_layers_is_refused_at_once_by_pull() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth")).with_busybox();
    let reg = TestRegistry::start(RegistryConfig::default());
    let bomb = TallImage::new(LAYERS);
    for blob in [&bomb.layer, &bomb.config] {
        let digest = berth_oci::Digest::of(blob);
        let (status, location) = http(
            &reg.host,
            "POST",
            "/v2/bomb/app/blobs/uploads/",
            "application/octet-stream",
            b"",
        );
        assert_eq!(status, 202, "starting an upload");
        let path = location
            .split_once(&reg.host)
            .map_or(&*location, |(_, p)| p);
        let (status, _) = http(
            &reg.host,
            "PUT",
            &format!("{path}&digest={digest}"),
            "application/octet-stream",
            blob,
        );
        assert_eq!(status, 201, "uploading {digest}");
    }
    let (status, _) = http(
        &reg.host,
        "PUT",
        "/v2/bomb/app/manifests/big",
        "application/vnd.oci.image.manifest.v1+json",
        &bomb.manifest,
    );
    assert_eq!(status, 201, "the registry took the manifest");
    let before = (
        store_entries(&s, "snapshots"),
        store_entries(&s, "blobs/sha256"),
    );
    let start = Instant::now();
    let out = run(
        &s,
        None,
        &["pull", "-q", &format!("{}/bomb/app:big", reg.host)],
    );
    assert_refused_at_once(&s, out, start.elapsed(), before);
}

#[test]
fn a_manifest_of_20000_layers_is_refused_at_once_by_load() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth")).with_busybox();
    let archive = s.path().join("bomb.tar");
    std::fs::write(&archive, TallImage::new(LAYERS).oci_archive("bomb:latest")).unwrap();
    let before = (
        store_entries(&s, "snapshots"),
        store_entries(&s, "blobs/sha256"),
    );
    let start = Instant::now();
    let out = run(&s, None, &["load", "-q", "-i", archive.to_str().unwrap()]);
    assert_refused_at_once(&s, out, start.elapsed(), before);
}
