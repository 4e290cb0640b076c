//! Git sources end to end: `ADD <git URL>` and a git URL as the build context, against real
//! repositories made with the system `git` and served over loopback HTTP by a static file
//! server in the test (git's "dumb" HTTP protocol: a bare repository after
//! `git update-server-info`, where no shallow fetch is possible) or by `git http-backend`
//! behind a small CGI server (the "smart" protocol, where each fetch is one commit deep).
//! The ADD tests run containers (the root tier); the context's limits fail before any step
//! runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_test_support::{Sandbox, Tier, assert_success, printed};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

/// Runs the system git for the test's own repositories (a fixed identity, no user config).
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "init.defaultBranch=master",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .output()
        .expect("git is required (scripts/test installs it)");
    assert_success(&out, &format!("git {args:?}"))
        .trim()
        .to_owned()
}

fn write(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A work tree at `dir` with `files` committed on master; returns the commit.
fn repo(dir: &Path, files: &[(&str, &str, u32)]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "."]);
    commit(dir, files, "first")
}

fn commit(dir: &Path, files: &[(&str, &str, u32)], message: &str) -> String {
    for (name, text, mode) in files {
        write(&dir.join(name), text, *mode);
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// Publishes the work tree `src` as `<served>/<name>.git` for dumb HTTP (again after every
/// change: a bare mirror plus `update-server-info`).
fn publish(src: &Path, served: &Path, name: &str) {
    let bare = served.join(format!("{name}.git"));
    let _ = std::fs::remove_dir_all(&bare);
    git(
        served,
        &[
            "clone",
            "-q",
            "--mirror",
            src.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    git(&bare, &["update-server-info"]);
}

/// A static file server on a free loopback port serving `root` (GET only, the query ignored,
/// no `..`), one request per connection, until the test process ends. With `stall`, it
/// accepts connections and never answers.
fn serve(root: PathBuf, stall: bool) -> u16 {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if stall {
                held.push(stream);
                continue;
            }
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
            }
            let path = line.split(' ').nth(1).unwrap_or("/");
            let path = path.split('?').next().unwrap_or("");
            let file = root.join(path.trim_start_matches('/'));
            let body = (!path.contains(".."))
                .then(|| std::fs::read(&file).ok())
                .flatten();
            let _ = match body {
                Some(b) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                            b.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| stream.write_all(&b)),
                None => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    port
}

fn build(s: &Sandbox, context: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = s.cmd();
    cmd.args(["build", "--progress", "plain"])
        .args(args)
        .arg(context);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), printed(&out))
}

fn sh(s: &Sandbox, image: &str, script: &str) -> String {
    s.ok(&["run", "--rm", image, "sh", "-c", script])
}

/// The repository of the ADD tests: master (two commits, the first tagged `v1` with an
/// annotated tag) and `dev` (from the first, one more commit).
struct Served {
    src: PathBuf,
    served: PathBuf,
    url: String,
    first: String,
}

fn served_repo(s: &Sandbox) -> Served {
    let src = s.path().join("src");
    let first = repo(
        &src,
        &[
            ("README", "one\n", 0o644),
            ("bin/run.sh", "#!/bin/sh\necho ran\n", 0o755),
            ("sub/inner.txt", "inner\n", 0o600),
        ],
    );
    std::os::unix::fs::symlink("/", src.join("escape")).unwrap();
    std::os::unix::fs::symlink("README", src.join("readme-link")).unwrap();
    commit(&src, &[], "links");
    git(&src, &["tag", "-a", "v1", "-m", "v1"]);
    git(&src, &["checkout", "-q", "-b", "dev"]);
    commit(&src, &[("sub/dev.txt", "dev\n", 0o644)], "dev");
    git(&src, &["checkout", "-q", "master"]);
    commit(&src, &[("README", "two\n", 0o644)], "second");
    let served = s.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    publish(&src, &served, "repo");
    let port = serve(served.clone(), false);
    Served {
        src,
        served,
        url: format!("http://127.0.0.1:{port}/repo.git"),
        first,
    }
}

#[test]
fn add_git_checks_out_refs_and_subdirs_with_gits_modes() {
    let Some(s) = ROOT.sandbox() else { return };
    let r = served_repo(&s);
    let url = &r.url;
    let tag = git(&r.src, &["rev-parse", "v1^{commit}"]);
    // The same server, with credentials in the URL: they reach neither the image nor output.
    let with_creds = url.replace("http://", "http://user:s3cret@");
    let ctx = s.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\n\
                 ADD {url} /all\n\
                 ADD {url}#v1 /tag\n\
                 ADD {url}#dev:sub /devsub\n\
                 ADD --keep-git-dir=true {with_creds}#{tag} /kept\n\
                 ADD --chown=5:6 {url}#:escape /esc\n\
                 ADD {url}#:sub/../../.. /up\n"
            ),
        )],
    );
    let (ok, out) = build(&s, ctx.to_str().unwrap(), &["-t", "g:1"], &[]);
    assert!(ok, "{out}");
    assert!(!out.contains("s3cret"), "{out}");
    let listing = sh(
        &s,
        "g:1",
        "cd /all && stat -c '%a %u:%g %n' README bin/run.sh sub sub/inner.txt && \
         readlink readme-link; readlink escape; ls -A /all | tr '\\n' ' '; echo; \
         cat /all/README /tag/README; ls /devsub | tr '\\n' ' '; echo; \
         cat /kept/.git/HEAD; grep -c -e s3cret -e user@ -e xxxxx /kept/.git/config; \
         ls -A /esc | tr '\\n' ' '; echo; stat -c '%u:%g' /esc/README; ls -A /up | tr '\\n' ' '",
    );
    let want = format!(
        "644 0:0 README\n755 0:0 bin/run.sh\n755 0:0 sub\n644 0:0 sub/inner.txt\n\
         README\n/\n\
         README bin escape readme-link sub \n\
         two\none\n\
         dev.txt inner.txt \n\
         {tag}\n0\n\
         README bin escape readme-link sub \n5:6\n\
         README bin escape readme-link sub "
    );
    assert_eq!(listing.trim_end(), want.trim_end());
    assert!(!r.first.is_empty());
    let history = s.ok(&["history", "--no-trunc", "g:1"]);
    assert!(!history.contains("s3cret"), "{history}");
    s.assert_clean();
}

#[test]
fn add_git_is_cached_by_commit() {
    let Some(s) = ROOT.sandbox() else { return };
    let r = served_repo(&s);
    let ctx = s.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD {}#master /app\n", r.url),
        )],
    );
    let ctx = ctx.to_str().unwrap();
    let (ok, first) = build(&s, ctx, &["-t", "c:1"], &[]);
    assert!(ok, "{first}");
    assert!(!first.contains("CACHED"), "{first}");
    let (ok, again) = build(&s, ctx, &["-t", "c:1"], &[]);
    assert!(ok, "{again}");
    assert!(
        again.contains("CACHED"),
        "the same commit is cached: {again}"
    );
    // A new commit on the branch: the step runs again and sees it.
    commit(&r.src, &[("README", "three\n", 0o644)], "third");
    publish(&r.src, &r.served, "repo");
    let (ok, moved) = build(&s, ctx, &["-t", "c:2"], &[]);
    assert!(ok, "{moved}");
    assert!(
        !moved.contains("CACHED"),
        "a new commit is not cached: {moved}"
    );
    assert_eq!(sh(&s, "c:2", "cat /app/README"), "three\n");
    assert!(!sh(&s, "c:2", "ls -A /app").contains(".git"));
}

#[test]
fn add_git_failures_say_why() {
    let Some(s) = ROOT.sandbox() else { return };
    let r = served_repo(&s);
    let url = &r.url;
    let tag = git(&r.src, &["rev-parse", "v1^{commit}"]);
    let cases = [
        (format!("ADD {url}#nosuch /x"), "no ref \"nosuch\""),
        (format!("ADD {url}#master:README /x"), "is not a directory"),
        (
            format!("ADD {url}#master:missing /x"),
            "subdirectory \"missing\"",
        ),
        (
            format!("ADD --checksum=0000000 {url}#v1 /x"),
            &format!("the ref \"v1\" is {tag}") as &str,
        ),
        (format!("ADD {url} other /x/"), "only one source is allowed"),
        (
            format!("ADD {url}#{} /x", "0".repeat(40)),
            "is not in the repository",
        ),
        // A local repository is never a git source (as BuildKit): a missing local path.
        (
            format!("ADD file://{}/repo.git /x", r.served.display()),
            "not found",
        ),
    ];
    for (i, (line, want)) in cases.iter().enumerate() {
        let ctx = s.context(
            &format!("bad{i}"),
            &[
                ("Dockerfile", &format!("FROM busybox\n{line}\n")),
                ("other", "o"),
            ],
        );
        let (ok, out) = build(&s, ctx.to_str().unwrap(), &[], &[]);
        assert!(!ok, "{line}: {out}");
        assert!(out.contains(want), "{line}: expected {want:?} in:\n{out}");
    }
    // The right commit prefix passes.
    let ctx = s.context(
        "good",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD --checksum={} {url}#v1 /x\n", &tag[..10]),
        )],
    );
    let (ok, out) = build(&s, ctx.to_str().unwrap(), &[], &[]);
    assert!(ok, "{out}");
}

#[test]
fn a_git_url_is_a_build_context() {
    let Some(s) = ROOT.sandbox() else { return };
    let src = s.path().join("ctxsrc");
    repo(
        &src,
        &[
            ("app/Dockerfile", "FROM busybox\nCOPY . /src\n", 0o644),
            (
                "app/alt.Dockerfile",
                "FROM busybox\nCOPY run.sh /alt/\n",
                0o644,
            ),
            ("app/.dockerignore", "skip\n", 0o644),
            ("app/skip", "skipped\n", 0o644),
            ("app/run.sh", "#!/bin/sh\n", 0o755),
            ("Dockerfile", "FROM busybox\nCOPY . /top\n", 0o644),
        ],
    );
    git(&src, &["checkout", "-q", "-b", "main"]);
    let served = s.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    publish(&src, &served, "ctx");
    let port = serve(served, false);
    let url = format!("http://127.0.0.1:{port}/ctx.git");
    // The user's git config is never read: one that sends every fetch of this server to a
    // port where nothing listens (and one in the environment) changes nothing.
    let home = s.path().join("home");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let redirect = format!(
        "[url \"http://127.0.0.1:{dead_port}/\"]\n\tinsteadOf = http://127.0.0.1:{port}/\n"
    );
    write(&home.join(".gitconfig"), &redirect, 0o644);
    write(&home.join(".config/git/config"), &redirect, 0o644);
    let parameters = format!("'url.http://127.0.0.1:{dead_port}/.insteadof'='{url}'");
    let xdg = home.join(".config");
    let home_env = [
        ("HOME", home.to_str().unwrap()),
        ("XDG_CONFIG_HOME", xdg.to_str().unwrap()),
        ("GIT_CONFIG_PARAMETERS", &parameters),
    ];
    let (ok, out) = build(&s, &format!("{url}#main:app"), &["-t", "x:1"], &home_env);
    assert!(ok, "{out}");
    assert_eq!(
        sh(
            &s,
            "x:1",
            "ls -A /src | tr '\\n' ' '; stat -c %a /src/run.sh"
        ),
        ".dockerignore Dockerfile alt.Dockerfile run.sh 755\n"
    );
    let (ok, out) = build(&s, &url, &["-t", "x:2"], &[]);
    assert!(ok, "{out}");
    assert_eq!(
        sh(&s, "x:2", "ls -A /top | tr '\\n' ' '"),
        "Dockerfile app "
    );
    let (ok, out) = build(
        &s,
        &format!("{url}#:app"),
        &["-t", "x:3", "-f", "alt.Dockerfile"],
        &[],
    );
    assert!(ok, "{out}");
    assert_eq!(sh(&s, "x:3", "ls /alt"), "run.sh\n");
    let (ok, out) = build(&s, &format!("{url}#nosuch"), &[], &[]);
    assert!(!ok && out.contains("no ref \"nosuch\""), "{out}");
    s.assert_clean();
}

#[test]
fn git_fetches_are_bounded_in_size_and_time() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let src = s.path().join("big");
    let noise = berth_test_support::pseudo_random_bytes(7, 2 << 20);
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("noise"), &noise).unwrap();
    repo(&src, &[("Dockerfile", "FROM scratch\n", 0o644)]);
    let served = s.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    publish(&src, &served, "big");
    let port = serve(served, false);
    let url = format!("http://127.0.0.1:{port}/big.git");
    let (ok, out) = build(&s, &url, &[], &[("BERTH_GIT_MAX_SIZE", "1000000")]);
    assert!(!ok, "{out}");
    assert!(out.contains("larger than 1000000 bytes"), "{out}");
    // A server that never answers: the time limit ends git.
    let stalled = serve(s.path().to_owned(), true);
    let started = std::time::Instant::now();
    let (ok, out) = build(
        &s,
        &format!("http://127.0.0.1:{stalled}/r.git"),
        &[],
        &[("BERTH_GIT_TIMEOUT", "2")],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("took longer than 2 s"), "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // Nothing of either is left in the store's tmp.
    let left: Vec<_> = std::fs::read_dir(s.store().join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn add_git_fetches_submodules_unless_asked_not_to() {
    let Some(s) = ROOT.sandbox() else { return };
    let served = s.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let port = serve(served.clone(), false);
    let lib = s.path().join("lib");
    repo(&lib, &[("libfile", "from the submodule\n", 0o644)]);
    publish(&lib, &served, "lib");
    let main = s.path().join("main");
    repo(&main, &[("README", "main\n", 0o644)]);
    git(
        &main,
        &[
            "submodule",
            "add",
            "-q",
            &format!("http://127.0.0.1:{port}/lib.git"),
            "lib",
        ],
    );
    commit(&main, &[], "with a submodule");
    publish(&main, &served, "main");
    let url = format!("http://127.0.0.1:{port}/main.git");
    let ctx = s.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD {url} /m\nADD {url}?submodules=false /n\n"),
        )],
    );
    let (ok, out) = build(&s, ctx.to_str().unwrap(), &["-t", "sub:1"], &[]);
    assert!(ok, "{out}");
    // A submodule on the local disk (a `file` URL or a path) is never fetched.
    let local = s.path().join("local");
    repo(&local, &[("README", "local\n", 0o644)]);
    git(
        &local,
        &["submodule", "add", "-q", lib.to_str().unwrap(), "lib"],
    );
    commit(&local, &[], "with a local submodule");
    publish(&local, &served, "local");
    let bad = s.context(
        "bad",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD http://127.0.0.1:{port}/local.git /l\n"),
        )],
    );
    let (ok, out) = build(&s, bad.to_str().unwrap(), &[], &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("git submodule failed") && out.contains("transport 'file' not allowed"),
        "{out}"
    );
    assert_eq!(
        sh(
            &s,
            "sub:1",
            "cat /m/lib/libfile; ls -A /m /m/lib /n/lib | tr '\\n' ' '"
        ),
        "from the submodule\n/m: .gitmodules README lib  /m/lib: libfile  /n/lib: "
    );
}

/// `git http-backend` (git's "smart" HTTP) behind a CGI server on a free loopback port,
/// serving the repositories under `root`; one request per connection, until the test ends.
fn serve_smart(root: PathBuf) -> u16 {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim().split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let header = |k: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let mut body = Vec::new();
            if header("transfer-encoding") == "chunked" {
                loop {
                    let mut size = String::new();
                    reader.read_line(&mut size).unwrap();
                    let n = usize::from_str_radix(size.trim(), 16).unwrap();
                    let mut chunk = vec![0; n + 2];
                    reader.read_exact(&mut chunk).unwrap();
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
            } else if let Ok(n) = header("content-length").parse::<usize>() {
                body.resize(n, 0);
                reader.read_exact(&mut body).unwrap();
            }
            let mut parts = line.split(' ');
            let method = parts.next().unwrap_or("GET").to_owned();
            let target = parts.next().unwrap_or("/");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let mut child = Command::new("git")
                .arg("http-backend")
                .env("GIT_PROJECT_ROOT", &root)
                .env("GIT_HTTP_EXPORT_ALL", "1")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("PATH_INFO", path)
                .env("QUERY_STRING", query)
                .env("REQUEST_METHOD", &method)
                .env("CONTENT_TYPE", header("content-type"))
                .env("CONTENT_LENGTH", body.len().to_string())
                .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
                .env("GIT_PROTOCOL", header("git-protocol"))
                .env("REMOTE_ADDR", "127.0.0.1")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&body);
            });
            let out = child.wait_with_output().unwrap().stdout;
            let split = out
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| (i, 4))
                .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
            let Some((end, skip)) = split else { continue };
            let head = String::from_utf8_lossy(&out[..end]).into_owned();
            let mut status = "200 OK".to_owned();
            let mut response = String::new();
            for h in head.lines() {
                match h.strip_prefix("Status:") {
                    Some(st) => status = st.trim().to_owned(),
                    None => response.push_str(&format!("{h}\r\n")),
                }
            }
            let body = &out[end + skip..];
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 {status}\r\n{response}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = stream.write_all(body);
        }
    });
    port
}

#[test]
fn add_git_over_smart_http_fetches_one_commit_deep() {
    let Some(s) = ROOT.sandbox() else { return };
    let r = served_repo(&s);
    let port = serve_smart(r.served.clone());
    let url = format!("http://127.0.0.1:{port}/repo.git");
    let tag = git(&r.src, &["rev-parse", "v1^{commit}"]);
    let ctx = s.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\n\
                 ADD --keep-git-dir=true {url}#master /k\n\
                 ADD --keep-git-dir=true {url}#{tag} /c\n\
                 ADD {url}#dev:sub /d\n"
            ),
        )],
    );
    let (ok, out) = build(&s, ctx.to_str().unwrap(), &["-t", "smart:1"], &[]);
    assert!(ok, "{out}");
    // A shallow clone (`.git/shallow` names the one commit fetched) of each ref.
    let head = git(&r.src, &["rev-parse", "master"]);
    assert_eq!(
        sh(
            &s,
            "smart:1",
            "cat /k/README /k/.git/shallow /c/README /c/.git/shallow; ls /d | tr '\\n' ' '"
        ),
        format!("two\n{head}\none\n{tag}\ndev.txt inner.txt ")
    );
}

/// `git daemon` (the `git://` protocol) on a free loopback port, serving `root`; killed (by
/// its PID) on drop.
struct Daemon(std::process::Child, u16);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn git_daemon(root: &Path) -> Daemon {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let child = Command::new("git")
        .arg("daemon")
        .arg("--export-all")
        .arg("--reuseaddr")
        .arg("--listen=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", root.display()))
        .arg(root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git daemon");
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed().as_secs() < 10, "git daemon did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Daemon(child, port)
}

#[test]
fn add_git_over_the_git_protocol() {
    let Some(s) = ROOT.sandbox() else { return };
    let r = served_repo(&s);
    let daemon = git_daemon(&r.served);
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.1);
    let ctx = s.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD {url}#v1 /t\nADD {url}#dev:sub /d\n"),
        )],
    );
    let (ok, out) = build(&s, ctx.to_str().unwrap(), &["-t", "gitproto:1"], &[]);
    assert!(ok, "{out}");
    assert_eq!(
        sh(&s, "gitproto:1", "cat /t/README; ls /d | tr '\\n' ' '"),
        "one\ndev.txt inner.txt "
    );
}
