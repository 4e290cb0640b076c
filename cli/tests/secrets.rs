//! Secret hygiene: build secrets (from a file and from the environment), proxy build args
//! with credentials, registry passwords (htpasswd over TLS) and bearer tokens (token auth) go
//! through builds, failing builds, login (right and wrong), push, pull, save and `--output`,
//! and then every byte berth wrote is searched for them: the whole store (compressed blobs
//! decompressed), the archives and outputs, the build log file, and the stdout and stderr of
//! every command. The credentials file itself (`config.json`) is allowed the registry logins
//! in Docker's base64 form, and nothing else.

// A test prints through the harness; the CLI's own rule on output (cli/clippy.toml) is not
// for it.
#![allow(clippy::disallowed_macros)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;
use berth_test_support::{RegistryConfig, Sandbox, TestRegistry, Tier, assert_success};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

const FILE_SECRET: &str = "file-secret-Q7xk2Lw9";
const ENV_SECRET: &str = "env-secret-Vb3m8Rt1";
const PROXY_PASSWORD: &str = "proxy-pass-Zc4n6Yp0";
const REGISTRY_PASSWORD: &str = "registry-pass-Hd5s1Ke7";
const TOKEN_PASSWORD: &str = "token-pass-Jw2q9Uf3";

/// Everything a command printed, kept for the final search.
#[derive(Default)]
struct Printed(Vec<(String, Vec<u8>)>);

impl Printed {
    fn keep(&mut self, what: &str, out: &Output) {
        self.0.push((format!("{what} stdout"), out.stdout.clone()));
        self.0.push((format!("{what} stderr"), out.stderr.clone()));
    }
}

fn berth(s: &Sandbox, regs: &[&TestRegistry], args: &[&str], stdin: &str) -> Output {
    let certs = s.path().join("certs.d");
    for reg in regs {
        let from = reg.certs_dir();
        for e in std::fs::read_dir(&from).unwrap().flatten() {
            let to = certs.join(e.file_name());
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(e.path()).unwrap().flatten() {
                std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
            }
        }
    }
    berth_test_support::output_with_stdin(
        s.cmd()
            .env("DOCKER_CONFIG", s.path().join("docker-config"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env("BERTH_CERTS_DIR", &certs)
            .env("ENV_TOKEN", ENV_SECRET)
            .args(args),
        stdin.as_bytes(),
    )
}

/// The bytes of a file, and its decompressed bytes when it is gzip or zstd.
fn readable_forms(path: &Path) -> Vec<Vec<u8>> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let mut forms = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        if flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut plain)
            .is_ok()
        {
            forms.push(plain);
        }
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        && let Ok(plain) = zstd::decode_all(&bytes[..])
    {
        forms.push(plain);
    }
    forms.push(bytes);
    forms
}

/// Tars (the archives berth saved) are searched entry by entry too, decompressing layers.
fn search(haystack: &[u8], needles: &[(String, Vec<u8>)], where_: &str) {
    for (name, needle) in needles {
        assert!(
            !haystack
                .windows(needle.len())
                .any(|w| w == needle.as_slice()),
            "{name} leaked into {where_}"
        );
    }
    if haystack.len() > 512 && &haystack[257..262] == b"ustar" {
        let mut archive = tar::Archive::new(haystack);
        if let Ok(entries) = archive.entries() {
            for mut e in entries.flatten() {
                let mut data = Vec::new();
                if e.read_to_end(&mut data).is_ok() {
                    let path = e
                        .path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    let tmp = tempfile::NamedTempFile::new().unwrap();
                    std::fs::write(tmp.path(), &data).unwrap();
                    for form in readable_forms(tmp.path()) {
                        search(&form, needles, &format!("{where_}:{path}"));
                    }
                }
            }
        }
    }
}

fn search_tree(root: &Path, needles: &[(String, Vec<u8>)]) -> usize {
    let mut files = 0;
    for entry in walkdir::WalkDir::new(root).into_iter().flatten() {
        if entry.file_type().is_file() {
            files += 1;
            for form in readable_forms(entry.path()) {
                search(&form, needles, &entry.path().display().to_string());
            }
        }
    }
    files
}

#[test]
fn secrets_passwords_tokens_and_proxy_credentials_are_in_nothing_berth_writes() {
    let Some(s) = ROOT.sandbox() else { return };
    let basic = TestRegistry::start(RegistryConfig {
        tls: true,
        htpasswd: vec![("sec-user".into(), REGISTRY_PASSWORD.into())],
        ..Default::default()
    });
    let token = TestRegistry::start(RegistryConfig {
        token_users: vec![("tok-user".into(), TOKEN_PASSWORD.into())],
        ..Default::default()
    });
    let regs = [&basic, &token];
    let mut printed = Printed::default();
    let run = |printed: &mut Printed, args: &[&str], stdin: &str| {
        let out = berth(&s, &regs, args, stdin);
        printed.keep(&args.join(" "), &out);
        out
    };

    // Build secrets and a proxy with credentials.
    let secret_file = s.path().join("secret-src/token.txt");
    std::fs::create_dir_all(secret_file.parent().unwrap()).unwrap();
    std::fs::write(&secret_file, FILE_SECRET).unwrap();
    let ctx = s.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let file_sum = berth_oci::Digest::of(FILE_SECRET.as_bytes())
        .hex()
        .to_owned();
    let env_sum = berth_oci::Digest::of(ENV_SECRET.as_bytes())
        .hex()
        .to_owned();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM busybox\n\
             RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | grep -q {file_sum} && echo file-secret-seen\n\
             RUN --mount=type=secret,id=envtok,target=/etc/envtok sha256sum /etc/envtok | grep -q {env_sum} && echo env-secret-seen\n\
             RUN test -n \"$HTTP_PROXY\" && test -n \"$https_proxy\" && echo proxy-seen > /proxy-seen\n\
             ENV KEEP=1\n\
             CMD [\"cat\", \"/proxy-seen\"]\n"
        ),
    )
    .unwrap();
    let proxy = format!("http://proxy-user:{PROXY_PASSWORD}@127.0.0.1:9");
    let logs = s.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::create_dir_all(s.path().join("out")).unwrap();
    let secret_arg = format!("id=tok,src={}", secret_file.display());
    let build_args = |tag: &str| -> Vec<String> {
        let log_file = logs.join(format!("{}.log", tag.replace(':', "-")));
        [
            "build",
            "--progress",
            "plain",
            "-t",
            tag,
            "--secret",
            &secret_arg,
            "--secret",
            "id=envtok,env=ENV_TOKEN",
            "--build-arg",
            &format!("HTTP_PROXY={proxy}"),
            "--build-arg",
            &format!("https_proxy={proxy}"),
            "--log-file",
            log_file.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let args = build_args("app:1");
    let out = run(
        &mut printed,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "",
    );
    assert_success(&out, "build");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("file-secret-seen") && text.contains("env-secret-seen"),
        "{text}"
    );
    // Again from the cache, and once more with --no-cache and SOURCE_DATE_EPOCH.
    assert_success(
        &run(
            &mut printed,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            "",
        ),
        "cached build",
    );
    let mut nc = build_args("app:nc");
    nc.insert(1, "--no-cache".into());
    assert_success(
        &run(
            &mut printed,
            &nc.iter().map(String::as_str).collect::<Vec<_>>(),
            "",
        ),
        "no-cache build",
    );
    // A failing step that holds the secrets: the error names the step, not the secret.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=secret,id=tok --mount=type=secret,id=envtok sh -c 'exit 3'\n",
    )
    .unwrap();
    let failed = run(
        &mut printed,
        &build_args("app:fail")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "",
    );
    assert_eq!(failed.status.code(), Some(1));
    // Outputs: an OCI archive with --output, and save.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nARG HTTP_PROXY\nRUN --mount=type=secret,id=tok cat /run/secrets/tok > /dev/null\n",
    )
    .unwrap();
    let mut outb = build_args("app:out");
    outb.insert(1, "--output".into());
    outb.insert(
        2,
        format!("type=oci,dest={}", s.path().join("out/oci.tar").display()),
    );
    assert_success(
        &run(
            &mut printed,
            &outb.iter().map(String::as_str).collect::<Vec<_>>(),
            "",
        ),
        "build --output",
    );
    assert_success(
        &run(
            &mut printed,
            &[
                "save",
                "-o",
                s.path().join("out/save.tar").to_str().unwrap(),
                "app:1",
            ],
            "",
        ),
        "save",
    );
    assert_success(
        &run(&mut printed, &["history", "--no-trunc", "app:1"], ""),
        "history",
    );
    assert_success(&run(&mut printed, &["inspect", "app:1"], ""), "inspect");
    let out = run(&mut printed, &["run", "--rm", "app:1"], "");
    assert_success(&out, "run");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "proxy-seen");

    // Registry with htpasswd: a wrong password first, then the right one; push and pull.
    let wrong = run(
        &mut printed,
        &["login", "-u", "sec-user", "--password-stdin", &basic.host],
        "wrong-Password-x\n",
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert_success(
        &run(
            &mut printed,
            &["login", "-u", "sec-user", "--password-stdin", &basic.host],
            &format!("{REGISTRY_PASSWORD}\n"),
        ),
        "login",
    );
    let remote = format!("{}/sec/app:1", basic.host);
    assert_success(&run(&mut printed, &["push", "app:1", &remote], ""), "push");
    assert_success(&run(&mut printed, &["pull", &remote], ""), "pull");
    // Token auth: login, push, pull, and a push refused for lack of scope.
    assert_success(
        &run(
            &mut printed,
            &["login", "-u", "tok-user", "--password-stdin", &token.host],
            &format!("{TOKEN_PASSWORD}\n"),
        ),
        "token login",
    );
    let tremote = format!("{}/sec/app:1", token.host);
    assert_success(
        &run(&mut printed, &["push", "app:1", &tremote], ""),
        "token push",
    );
    assert_success(&run(&mut printed, &["pull", &tremote], ""), "token pull");
    assert_success(&run(&mut printed, &["system", "check"], ""), "check");

    // What to look for: each secret as written, and the login as Docker encodes it.
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("the file secret".into(), FILE_SECRET.into()),
        ("the env secret".into(), ENV_SECRET.into()),
        ("the proxy password".into(), PROXY_PASSWORD.into()),
        ("the registry password".into(), REGISTRY_PASSWORD.into()),
        ("the token user's password".into(), TOKEN_PASSWORD.into()),
    ];
    let tokens = token.tokens();
    assert!(!tokens.is_empty(), "the token server issued tokens");
    for (i, t) in tokens.iter().enumerate() {
        // The signature part is unique to each token.
        let sig = t.rsplit('.').next().unwrap();
        needles.push((format!("bearer token {i}"), sig.as_bytes().to_vec()));
    }
    let basic_login = b64(&format!("sec-user:{REGISTRY_PASSWORD}"));
    let mut with_login = needles.clone();
    with_login.push((
        "the token login, base64".into(),
        b64(&format!("tok-user:{TOKEN_PASSWORD}")).into(),
    ));
    with_login.push((
        "the registry login, base64".into(),
        basic_login.clone().into(),
    ));

    // The store, the outputs and the log: nothing.
    let mut files = search_tree(&s.store(), &with_login);
    files += search_tree(&s.path().join("out"), &with_login);
    assert!(std::fs::read(logs.join("app-1.log")).unwrap().len() > 100);
    files += search_tree(&logs, &with_login);
    for (what, bytes) in &printed.0 {
        search(bytes, &with_login, what);
    }
    // The credentials file: mode 0600, holding the two logins as Docker does (base64 of
    // user:password), and no plaintext password, token, proxy or build secret.
    let config = s.path().join("docker-config/config.json");
    let mode = std::fs::metadata(&config).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&basic_login), "{text}");
    files += search_tree(&s.path().join("docker-config"), &needles);
    // Nothing left in /dev/shm, where secrets live during a step.
    let left: Vec<PathBuf> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("berth-secret-")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
    eprintln!(
        "searched {files} files and {} outputs for {} secrets",
        printed.0.len(),
        with_login.len()
    );
}

/// A server that serves `body` at any path to a request carrying `Authorization: Basic
/// <expected>`, and 401 otherwise; counts the authorised requests.
fn basic_auth_server(
    expected: String,
    body: &'static [u8],
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut authorised = false;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if h.to_ascii_lowercase().starts_with("authorization:") {
                    authorised = h.trim_end().ends_with(&format!("Basic {expected}"));
                }
            }
            let _ = if authorised {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(body))
            } else {
                stream.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
            };
        }
    });
    (port, served)
}

/// `ADD http://user:password@host/file`: the download uses the credentials, and the password
/// is in nothing berth shows or stores: not the progress, the log file, the history or any
/// byte of the store; a failing download's error hides it too.
#[test]
fn add_url_credentials_are_in_nothing_berth_shows_or_stores() {
    const USER: &str = "add-user-Mx81";
    const PASSWORD: &str = "add-pass-Rk27Tz";
    let Some(s) = ROOT.sandbox() else { return };
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let (port, served) = basic_auth_server(basic, b"remote-file\n");
    let ctx = s.path().join("ctx-add-url");
    std::fs::create_dir_all(&ctx).unwrap();
    let mut printed = Printed::default();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM busybox\nADD http://{USER}:{PASSWORD}@127.0.0.1:{port}/files/f.txt /f.txt\nRUN cat /f.txt\n"
        ),
    )
    .unwrap();
    let log = s.path().join("add-url.log");
    let out = berth(
        &s,
        &[],
        &[
            "build",
            "--progress",
            "plain",
            "--log-file",
            log.to_str().unwrap(),
            "-t",
            "addurl:1",
            ctx.to_str().unwrap(),
        ],
        "",
    );
    assert_success(&out, "build");
    printed.keep("build", &out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("remote-file"));
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
    for args in [
        &["history", "--no-trunc", "addurl:1"][..],
        &["inspect", "addurl:1"],
    ] {
        let out = berth(&s, &[], args, "");
        assert_success(&out, args[0]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("xxxxx@127.0.0.1"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        printed.keep(args[0], &out);
    }
    // A download that fails (a wrong path the server refuses without the credentials' user)
    // names the URL without them; so does a Dockerfile error shown with its lines.
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM busybox\nADD http://other:{PASSWORD}@127.0.0.1:{port}/files/f.txt /f\n"),
    )
    .unwrap();
    let out = berth(
        &s,
        &[],
        &["build", "--progress", "plain", ctx.to_str().unwrap()],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("xxxxx@127.0.0.1"));
    printed.keep("failed build", &out);
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM busybox\nADD --bogus http://u:{PASSWORD}@127.0.0.1:{port}/f /f\n"),
    )
    .unwrap();
    let out = berth(
        &s,
        &[],
        &["build", "--progress", "plain", ctx.to_str().unwrap()],
        "",
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    printed.keep("bad Dockerfile", &out);

    let needles = vec![("the ADD password".to_owned(), PASSWORD.as_bytes().to_vec())];
    for (what, bytes) in &printed.0 {
        search(bytes, &needles, what);
    }
    search(&std::fs::read(&log).unwrap(), &needles, "the log file");
    assert!(search_tree(&s.store(), &needles) > 0);
}
