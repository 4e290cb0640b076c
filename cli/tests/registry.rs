//! pull, push, login, logout and tags against a real registry (Debian's `docker-registry`,
//! started by each test on a free loopback port): no auth, htpasswd over TLS with a CA made
//! for the test, and token auth with a token server of the test's own. Interop: what berth
//! pushes is read by skopeo and unpacked by umoci; what skopeo pushes is pulled and run by
//! berth.

use std::path::Path;

use berth_test_support::{
    Fault, FaultProxy, RegistryConfig, Sandbox, TestRegistry, Tier, assert_success, tool,
};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

/// A berth command with its own Docker config directory (credentials) and CA directory.
fn berth(s: &Sandbox, reg: &TestRegistry, args: &[&str]) -> std::process::Output {
    s.cmd()
        .env("DOCKER_CONFIG", s.path().join("docker-config"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env("BERTH_CERTS_DIR", reg.certs_dir())
        .args(args)
        .output()
        .unwrap()
}

fn ok(s: &Sandbox, reg: &TestRegistry, args: &[&str]) -> String {
    assert_success(&berth(s, reg, args), &format!("berth {args:?}"))
}

fn fail(s: &Sandbox, reg: &TestRegistry, args: &[&str]) -> String {
    let out = berth(s, reg, args);
    assert_eq!(out.status.code(), Some(1), "berth {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn build_app(s: &Sandbox, name: &str) {
    let ctx = s.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo pushed-and-pulled > /msg\nCMD [\"cat\", \"/msg\"]\n",
        )],
    );
    s.ok(&["build", "-q", "-t", name, ctx.to_str().unwrap()]);
}

fn digest_of(out: &str) -> String {
    out.split("digest: ").nth(1).unwrap().trim().to_owned()
}

#[test]
fn push_pull_round_trip_and_interop_with_skopeo_and_umoci() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    let name = format!("{}/team/app:1.0", reg.host);
    build_app(&s, &name);
    let first = digest_of(&ok(&s, &reg, &["push", &name]));
    // A second push sends nothing and gives the same digest (layers compressed once).
    let out = berth(&s, &reg, &["push", &name]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Already exists"));
    assert_eq!(digest_of(&String::from_utf8_lossy(&out.stdout)), first);
    // skopeo reads it; umoci unpacks it.
    let inspect = tool(
        "skopeo",
        &["inspect", "--tls-verify=false", &format!("docker://{name}")],
        s.path(),
    );
    assert!(inspect.contains(&first), "{inspect}");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{name}"),
            "oci:layout:app",
        ],
        s.path(),
    );
    s.tool("umoci", &["unpack", "--image", "layout:app", "bundle"]);
    assert_eq!(
        std::fs::read_to_string(s.path().join("bundle/rootfs/msg")).unwrap(),
        "pushed-and-pulled\n"
    );
    // Another store pulls it by tag and by digest, and runs it.
    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let out = ok(&other, &reg, &["pull", &name]);
    assert!(out.contains(&first), "{out}");
    assert_eq!(other.ok(&["run", "--rm", &name]), "pushed-and-pulled\n");
    let by_digest = format!("{}/team/app@{first}", reg.host);
    ok(&other, &reg, &["pull", &by_digest]);
    other.assert_clean();
    // An image skopeo pushed (from an archive berth saved) is pulled and run by berth.
    s.ok(&["save", "-o", "x.tar", &name]);
    let theirs = format!("{}/skopeo/app:2", reg.host);
    s.tool(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "oci-archive:x.tar",
            &format!("docker://{theirs}"),
        ],
    );
    ok(&other, &reg, &["pull", &theirs]);
    assert_eq!(other.ok(&["run", "--rm", &theirs]), "pushed-and-pulled\n");
    // Tags, and errors that say what is missing.
    assert_eq!(
        ok(&s, &reg, &["tags", &format!("{}/team/app", reg.host)]),
        "1.0\n"
    );
    let err = fail(
        &other,
        &reg,
        &["pull", &format!("{}/team/app:nope", reg.host)],
    );
    assert!(
        err.contains("not found") && err.contains("team/app"),
        "{err}"
    );
    let err = fail(
        &other,
        &reg,
        &["pull", &format!("{}/nobody/here:1", reg.host)],
    );
    assert!(err.contains("not found"), "{err}");
    s.assert_clean();
}

#[test]
fn htpasswd_over_tls_login_logout_and_clear_errors() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig {
        htpasswd: vec![("alice".into(), "correct horse".into())],
        tls: true,
        ..Default::default()
    });
    let name = format!("{}/alice/app:1", reg.host);
    build_app(&s, &name);
    // Without logging in: a 401 that says to log in.
    let err = fail(&s, &reg, &["push", &name]);
    assert!(
        err.contains("authentication required") && err.contains("berth login"),
        "{err}"
    );
    // A wrong password is refused and nothing is saved.
    let out = s
        .cmd()
        .env("DOCKER_CONFIG", s.path().join("docker-config"))
        .env("BERTH_CERTS_DIR", reg.certs_dir())
        .args(["login", "-u", "alice", "--password-stdin", &reg.host])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"wrong\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("wrong"), "the password never shows: {err}");
    assert!(!s.path().join("docker-config/config.json").exists());
    // The right one: verified, then saved with mode 0600.
    let login = |password: &str| {
        s.cmd()
            .env("DOCKER_CONFIG", s.path().join("docker-config"))
            .env("BERTH_CERTS_DIR", reg.certs_dir())
            .args(["login", "-u", "alice", "--password-stdin", &reg.host])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(password.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap()
    };
    let out = login("correct horse\n");
    assert_success(&out, "login");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Login Succeeded"));
    let config = s.path().join("docker-config/config.json");
    let mode = std::fs::metadata(&config).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let push = ok(&s, &reg, &["push", &name]);
    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let pulled = s
        .cmd()
        .env("BERTH_ROOT", other.store())
        .env("DOCKER_CONFIG", s.path().join("docker-config"))
        .env("BERTH_CERTS_DIR", reg.certs_dir())
        .args(["pull", &name])
        .output()
        .unwrap();
    assert_success(&pulled, "pull into the other store");
    assert!(String::from_utf8_lossy(&pulled.stdout).contains(&digest_of(&push)));
    // Without the CA: a TLS error that says where the CA goes.
    let no_ca = s
        .cmd()
        .env("DOCKER_CONFIG", s.path().join("docker-config"))
        .env("BERTH_CERTS_DIR", s.path().join("empty-certs"))
        .args(["pull", &name])
        .output()
        .unwrap();
    assert_eq!(no_ca.status.code(), Some(1));
    let err = String::from_utf8_lossy(&no_ca.stderr);
    assert!(err.contains("certs.d") && err.contains(&reg.host), "{err}");
    // The password is in no file berth wrote but the config it was asked to write.
    for entry in walkdir::WalkDir::new(s.store()).into_iter().flatten() {
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(
                !bytes.windows(13).any(|w| w == b"correct horse"),
                "{}",
                entry.path().display()
            );
        }
    }
    // Logout forgets it.
    assert!(ok(&s, &reg, &["logout", &reg.host]).contains("Removing login credentials"));
    let err = fail(&s, &reg, &["push", &name]);
    assert!(err.contains("authentication required"), "{err}");
}

#[test]
fn token_auth_with_scopes_and_anonymous_pull() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig {
        token_users: vec![("bob".into(), "s3cret".into())],
        anonymous_pull: true,
        ..Default::default()
    });
    let name = format!("{}/bob/app:1", reg.host);
    build_app(&s, &name);
    // Anonymous tokens cannot push.
    let err = fail(&s, &reg, &["push", &name]);
    assert!(
        err.contains("401") || err.contains("authentication required") || err.contains("denied"),
        "{err}"
    );
    let out = s
        .cmd()
        .env("DOCKER_CONFIG", s.path().join("docker-config"))
        .args(["login", "-u", "bob", "--password-stdin", &reg.host])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"s3cret")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_success(&out, "login --password-stdin");
    let digest = digest_of(&ok(&s, &reg, &["push", &name]));
    assert!(reg.tokens_issued() >= 2);
    // Pushing the same image to another repository mounts its blobs from the first.
    let copy = format!("{}/bob/copy:1", reg.host);
    s.ok(&["tag", &name, &copy]);
    assert_eq!(digest_of(&ok(&s, &reg, &["push", &copy])), digest);
    // Anyone may pull (anonymous token with pull scope).
    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let out = other
        .cmd()
        .env("DOCKER_CONFIG", other.path().join("none"))
        .args(["pull", &copy])
        .output()
        .unwrap();
    assert_success(&out, "the anonymous pull");
    assert_eq!(other.ok(&["run", "--rm", &copy]), "pushed-and-pulled\n");
}

#[test]
fn build_pulls_its_base_and_pushes_the_result() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    let base = format!("{}/base/busybox:1", reg.host);
    s.ok(&["tag", "busybox", &base]);
    ok(&s, &reg, &["push", &base]);
    // A store without the base: FROM pulls it; --push sends the result.
    let builder = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let ctx = builder.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!(
                "FROM {base}\nRUN echo built-on-a-pulled-base > /msg\nCMD [\"cat\", \"/msg\"]\n"
            ),
        )],
    );
    let built = format!("{}/apps/built:1", reg.host);
    let out = berth(
        &builder,
        &reg,
        &[
            "build",
            "--progress",
            "plain",
            "--push",
            "-t",
            &built,
            ctx.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("pulling") && err.contains("pushed"), "{err}");
    // A rebuild with --pull checks the registry again and still hits the cache.
    let out = berth(
        &builder,
        &reg,
        &[
            "build",
            "--progress",
            "plain",
            "--pull",
            "-t",
            &built,
            ctx.to_str().unwrap(),
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("CACHED"));
    let third = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    ok(&third, &reg, &["pull", &built]);
    assert_eq!(
        third.ok(&["run", "--rm", &built]),
        "built-on-a-pulled-base\n"
    );
    builder.assert_clean();
}

#[test]
fn copy_between_store_layouts_archives_and_registries() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    build_app(&s, "app:1");
    let dir = s.path().join("layout");
    ok(
        &s,
        &reg,
        &["copy", "app:1", &format!("oci:{}:app", dir.display())],
    );
    s.tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:app", dir.display()),
            "bundle",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(s.path().join("bundle/rootfs/msg")).unwrap(),
        "pushed-and-pulled\n"
    );
    let remote = format!("docker://{}/copied/app:1", reg.host);
    ok(
        &s,
        &reg,
        &["copy", &format!("oci:{}:app", dir.display()), &remote],
    );
    ok(&s, &reg, &["copy", &remote, "oci-archive:out.tar:copied:1"]);
    let inspect = s
        .tool_cmd("skopeo")
        .args(["inspect", "oci-archive:out.tar"])
        .current_dir(s.path())
        .output()
        .unwrap();
    assert!(assert_success(&inspect, "skopeo inspect").contains("Digest"));
    ok(
        &s,
        &reg,
        &["copy", &remote, "docker-archive:out-docker.tar"],
    );
    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let archive = s.path().join("out-docker.tar");
    ok(
        &other,
        &reg,
        &[
            "copy",
            &format!("docker-archive:{}", archive.display()),
            "store:roundtrip:1",
        ],
    );
    assert_eq!(
        other.ok(&["run", "--rm", "roundtrip:1"]),
        "pushed-and-pulled\n"
    );
    other.assert_clean();
    s.assert_clean();
}

/// A TCP proxy to `target` that cuts the first connection that has carried more than
/// `cut_after` bytes towards the client (a dropped download), once; everything else passes.
fn cutting_proxy(target: String, cut_after: usize) -> String {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cut_done = std::sync::Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = std::net::TcpStream::connect(&target) else {
                continue;
            };
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let cut_done = cut_done.clone();
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let mut sent = 0usize;
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match s_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n;
                    if sent > cut_after && !cut_done.swap(true, Ordering::SeqCst) {
                        let _ = c_write.shutdown(std::net::Shutdown::Both);
                        let _ = s_read.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                }
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn a_dropped_download_resumes_and_verifies() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    // A layer of 3 MiB of incompressible bytes, so the cut lands inside a blob.
    let name = format!("{}/big/app:1", reg.host);
    let data = build_big(&s, &name, 3 << 20);
    let pushed = digest_of(&ok(&s, &reg, &["push", &name]));
    let proxy = cutting_proxy(reg.host.clone(), 1 << 20);
    let via = format!("{proxy}/big/app:1");
    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let out = ok(&other, &reg, &["pull", &via]);
    assert!(out.contains(&pushed), "{out}");
    let sum = other.ok(&["run", "--rm", &via, "sha256sum", "/blob.bin"]);
    assert!(sum.starts_with(berth_oci::Digest::of(&data).hex()), "{sum}");
    other.assert_clean();
}

/// Writes a blob into an OCI layout directory; returns its descriptor fields.
fn layout_blob(dir: &Path, bytes: &[u8]) -> (String, usize) {
    let digest = berth_oci::Digest::of(bytes);
    let path = dir.join("blobs/sha256").join(digest.hex());
    std::fs::write(path, bytes).unwrap();
    (digest.to_string(), bytes.len())
}

#[test]
fn multi_platform_index_pulls_the_platform_asked_for_and_copies_whole() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    // Two images that say which platform they are for: busybox plus /arch.
    for (arch, platform) in [("amd64", "linux/amd64"), ("arm64", "linux/arm64")] {
        let root = s.path().join(format!("root-{arch}"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("arch"), format!("{arch}\n")).unwrap();
        s.ok(&[
            "import",
            "--platform",
            platform,
            root.to_str().unwrap(),
            &format!("arch:{arch}"),
        ]);
    }
    // An OCI layout holding both, and an image index over them made by hand.
    let layout = s.path().join("layout");
    let layout_ref = |r: &str| format!("oci:{}:{r}", layout.display());
    for arch in ["amd64", "arm64"] {
        s.ok(&["copy", &format!("arch:{arch}"), &layout_ref(arch)]);
    }
    let top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut manifests = Vec::new();
    for m in top["manifests"].as_array().unwrap() {
        let arch = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut entry = m.clone();
        entry.as_object_mut().unwrap().remove("annotations");
        entry["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        manifests.push(entry);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let (digest, size) = layout_blob(&layout, index.to_string().as_bytes());
    let mut top = top;
    top["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }));
    std::fs::write(layout.join("index.json"), top.to_string()).unwrap();
    // `copy --all` sends the whole index; skopeo sees both platforms.
    let name = format!("{}/multi/app:1", reg.host);
    ok(
        &s,
        &reg,
        &[
            "copy",
            "--all",
            &layout_ref("multi"),
            &format!("docker://{name}"),
        ],
    );
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ],
        s.path(),
    );
    let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2, "{raw}");
    assert_eq!(
        berth_oci::Digest::of(raw.to_string().as_bytes()).to_string(),
        digest,
        "the index went up byte for byte"
    );
    // A pull takes the platform asked for, the host's by default.
    let arch_of = |sb: &Sandbox, image: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(&sb.ok(&["inspect", image])).unwrap();
        v[0]["Architecture"].as_str().unwrap().to_owned()
    };
    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    ok(&other, &reg, &["pull", "--platform", "linux/arm64", &name]);
    assert_eq!(arch_of(&other, &name), "arm64");
    // Its `RepoDigests` name the index the registry has, as Docker's do.
    assert_eq!(
        repo_digests(&other, &name),
        [format!("{}/multi/app@{digest}", reg.host)]
    );
    let host_arch = if cfg!(target_arch = "x86_64") {
        "amd64"
    } else {
        "arm64"
    };
    let third = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    ok(&third, &reg, &["pull", &name]);
    assert_eq!(arch_of(&third, &name), host_arch);
    // A platform the index lacks: an error that lists what it has.
    let err = fail(&third, &reg, &["pull", "--platform", "linux/s390x", &name]);
    assert!(
        err.contains("linux/s390x") && err.contains("linux/arm64"),
        "{err}"
    );
    // FROM --platform (and build --platform) pick that platform's image, pulling it when the
    // store holds another one; without emulation only non-RUN steps are used here.
    let ctx = third.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM --platform=linux/arm64 {name}\nLABEL picked=yes\n"),
        )],
    );
    let build = |sb: &Sandbox, extra: &[&str], tag: &str| {
        let mut args = vec!["build", "-q", "-t", tag];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        ok(sb, &reg, &args)
    };
    build(&third, &[], "picked:1");
    assert_eq!(arch_of(&third, "picked:1"), "arm64");
    let out = third.path().join("out");
    build(
        &third,
        &["-o", &format!("type=local,dest={}", out.display())],
        "picked:2",
    );
    assert_eq!(
        std::fs::read_to_string(out.join("arch")).unwrap(),
        "arm64\n"
    );
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {name}\nLABEL picked=yes\n"),
    )
    .unwrap();
    build(&third, &["--platform", "linux/arm64"], "picked:3");
    assert_eq!(arch_of(&third, "picked:3"), "arm64");
    // `copy --all` from the registry into a layout keeps the index whole.
    let back = third.path().join("back");
    ok(
        &third,
        &reg,
        &[
            "copy",
            "--all",
            &format!("docker://{name}"),
            &format!("oci:{}:m", back.display()),
        ],
    );
    let raw = tool(
        "skopeo",
        &["inspect", "--raw", &format!("oci:{}:m", back.display())],
        third.path(),
    );
    let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2, "{raw}");
    other.assert_clean();
    third.assert_clean();
    s.assert_clean();
}

#[test]
fn add_https_url_trusts_the_certs_d_ca() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig {
        tls: true,
        ..Default::default()
    });
    // A blob in the registry is the file served over HTTPS.
    let name = format!("{}/files/app:1", reg.host);
    build_app(&s, &name);
    ok(&s, &reg, &["push", &name]);
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", &name])).unwrap();
    let config = v[0]["Id"].as_str().unwrap().to_owned();
    let url = format!("https://{}/v2/files/app/blobs/{config}", reg.host);
    let ctx = s.context(
        "https-ctx",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD --checksum={config} {url} /config.json\n"),
        )],
    );
    ok(
        &s,
        &reg,
        &["build", "-q", "-t", "https:1", ctx.to_str().unwrap()],
    );
    let got = s.ok(&["run", "--rm", "https:1", "sha256sum", "/config.json"]);
    assert!(
        got.starts_with(config.trim_start_matches("sha256:")),
        "{got}"
    );
    // Without the CA the TLS error says where it would go.
    let out = s
        .cmd()
        .args(["build", "-q", "--no-cache", ctx.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("certificate") && err.contains(&url), "{err}");
    s.assert_clean();
}

fn fault(method: &'static str, path_part: &'static str, answer: &'static str) -> Fault {
    Fault {
        method,
        path_part,
        answer,
        times: 1,
        skip: 0,
    }
}

#[test]
fn pulls_retry_5xx_and_429_with_retry_after_and_a_lasting_limit_is_clear() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    let name = format!("{}/retry/app:1", reg.host);
    build_app(&s, &name);
    let pushed = digest_of(&ok(&s, &reg, &["push", &name]));
    let proxy = FaultProxy::start(
        reg.host.clone(),
        vec![
            fault("GET", "/manifests/", "503 Service Unavailable"),
            fault("GET", "/blobs/", "429 Too Many Requests\r\nRetry-After: 1"),
            fault("GET", "/blobs/", "502 Bad Gateway"),
        ],
    );
    let via = format!("{}/retry/app:1", proxy.host);
    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let started = std::time::Instant::now();
    let out = ok(&other, &reg, &["pull", &via]);
    assert!(out.contains(&pushed), "{out}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After: 1 was waited for"
    );
    let seen = proxy.requests();
    assert_eq!(
        seen.iter().filter(|r| r.ends_with("(injected)")).count(),
        3,
        "{seen:#?}"
    );
    assert_eq!(other.ok(&["run", "--rm", &via]), "pushed-and-pulled\n");
    // A limit that lasts: a few tries, then an error that says what it is.
    let limited = FaultProxy::start(
        reg.host.clone(),
        vec![Fault {
            times: 100,
            ..fault(
                "GET",
                "/manifests/",
                "429 Too Many Requests\r\nRetry-After: 1",
            )
        }],
    );
    let err = fail(
        &other,
        &reg,
        &["pull", &format!("{}/retry/app:1", limited.host)],
    );
    assert!(
        err.contains("too many requests (429)") && err.contains(&limited.host),
        "{err}"
    );
    let tries = limited.requests().len();
    assert!((2..=5).contains(&tries), "bounded retries: {tries}");
    other.assert_clean();
}

#[test]
fn large_layers_upload_in_chunks_and_a_failed_chunk_resumes() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    // The second chunk fails once (the proxy answers 503 in the registry's place).
    let proxy = FaultProxy::start(
        reg.host.clone(),
        vec![Fault {
            skip: 1,
            ..fault("PATCH", "/blobs/uploads/", "503 Service Unavailable")
        }],
    );
    // 70 MiB that does not compress: above the 64 MiB chunking threshold once gzipped.
    let name = format!("{}/large/app:1", proxy.host);
    let data = build_big(&s, &name, 70 << 20);
    let pushed = digest_of(&ok(&s, &reg, &["push", &name]));
    let served = reg.requests();
    let patches = served.iter().filter(|r| r.starts_with("PATCH ")).count();
    assert!(patches >= 9, "8 MiB chunks: {served:#?}");
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.starts_with("PATCH ") && r.ends_with("(injected)")),
        "a chunk failed"
    );
    assert!(
        served
            .iter()
            .any(|r| r.starts_with("GET /v2/large/app/blobs/uploads/") && r.ends_with(" 204")),
        "the upload's status was asked: {served:#?}"
    );
    // What arrived is whole: skopeo agrees on the digest, and a pull verifies every blob.
    let inspect = tool(
        "skopeo",
        &["inspect", "--tls-verify=false", &format!("docker://{name}")],
        s.path(),
    );
    assert!(inspect.contains(&pushed), "{inspect}");
    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let direct = format!("{}/large/app:1", reg.host);
    ok(&other, &reg, &["pull", &direct]);
    let sum = other.ok(&["run", "--rm", &direct, "sha256sum", "/blob.bin"]);
    assert!(sum.starts_with(berth_oci::Digest::of(&data).hex()), "{sum}");
    other.assert_clean();
}

#[test]
fn a_push_to_a_second_repository_mounts_and_uploads_nothing() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    let a = format!("{}/team/a:1", reg.host);
    build_app(&s, &a);
    ok(&s, &reg, &["push", &a]);
    let before = reg.requests().len();
    let b = format!("{}/team/b:1", reg.host);
    s.ok(&["tag", &a, &b]);
    ok(&s, &reg, &["push", &b]);
    let during: Vec<String> = reg.requests()[before..].to_vec();
    let mounts = during
        .iter()
        .filter(|r| {
            r.starts_with("POST /v2/team/b/blobs/uploads/?")
                && r.contains("mount=")
                && r.ends_with(" 201")
        })
        .count();
    assert!(mounts >= 2, "busybox's layer and the app's: {during:#?}");
    assert!(
        !during
            .iter()
            .any(|r| r.starts_with("PATCH ") || r.starts_with("PUT /v2/team/b/blobs/")),
        "no blob bytes went up: {during:#?}"
    );
}

#[test]
fn credential_helpers_store_get_and_erase() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig {
        tls: true,
        htpasswd: vec![("helper-user".into(), "helper-pass-123".into())],
        ..Default::default()
    });
    // A helper that keeps what `store` gets and gives it back on `get`.
    let bin = s.path().join("helper-bin");
    let kept = s.path().join("helper-data");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&kept).unwrap();
    let script = format!(
        "#!/bin/sh\necho \"$1\" >> {k}/calls\ncase \"$1\" in\nstore) cat > {k}/stored.json ;;\nget) cat > /dev/null; if [ -f {k}/stored.json ]; then cat {k}/stored.json; else echo 'credentials not found in native keychain'; exit 1; fi ;;\nerase) cat > /dev/null; rm -f {k}/stored.json ;;\nesac\n",
        k = kept.display()
    );
    let helper = bin.join("docker-credential-berthtest");
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config_dir = s.path().join("docker-config");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("config.json"),
        r#"{"credsStore": "berthtest"}"#,
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |args: &[&str], stdin: &str| {
        berth_test_support::output_with_stdin(
            s.cmd()
                .env("DOCKER_CONFIG", &config_dir)
                .env_remove("REGISTRY_AUTH_FILE")
                .env("BERTH_CERTS_DIR", reg.certs_dir())
                .env("PATH", &path)
                .args(args),
            stdin.as_bytes(),
        )
    };
    let out = run(
        &["login", "-u", "helper-user", "--password-stdin", &reg.host],
        "helper-pass-123\n",
    );
    assert_success(&out, "login through the helper");
    let config = std::fs::read_to_string(config_dir.join("config.json")).unwrap();
    assert!(
        !config.contains("helper-pass-123") && !config.contains("auth\""),
        "{config}"
    );
    let stored = std::fs::read_to_string(kept.join("stored.json")).unwrap();
    assert!(
        stored.contains("helper-pass-123"),
        "the helper has it: {stored}"
    );
    // Push and pull use the helper's credentials.
    let name = format!("{}/helped/app:1", reg.host);
    build_app(&s, &name);
    let out = run(&["push", &name], "");
    assert_success(&out, "push with the helper's credentials");
    let calls = std::fs::read_to_string(kept.join("calls")).unwrap();
    assert!(calls.lines().any(|c| c == "get"), "{calls}");
    // logout erases it; then the registry wants a login again.
    let out = run(&["logout", &reg.host], "");
    assert_success(&out, "pull with the helper's credentials");
    assert!(!kept.join("stored.json").exists());
    let out = run(&["pull", &name], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("berth login"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mutual_tls_sends_the_client_certificate_from_certs_d() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig {
        tls: true,
        client_certs: true,
        ..Default::default()
    });
    let name = format!("{}/mtls/app:1", reg.host);
    build_app(&s, &name);
    // With the CA alone the registry refuses the handshake.
    let out = berth(&s, &reg, &["push", &name]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains(&reg.host), "{err}");
    // With client.cert and client.key beside ca.crt it works both ways.
    let with_cert = |sb: &Sandbox, args: &[&str]| {
        let out = sb
            .cmd()
            .env("DOCKER_CONFIG", sb.path().join("docker-config"))
            .env("BERTH_CERTS_DIR", reg.client_certs_dir())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    with_cert(&s, &["push", &name]);
    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    with_cert(&other, &["pull", &name]);
    assert_eq!(other.ok(&["run", "--rm", &name]), "pushed-and-pulled\n");
}

#[test]
fn docker_hub_names_go_to_the_configured_mirror() {
    let Some(s) = ROOT.sandbox() else { return };
    let mirror = TestRegistry::start(RegistryConfig::default());
    let on_mirror = format!("{}/library/busybox:mirrored", mirror.host);
    build_app(&s, &on_mirror);
    ok(&s, &mirror, &["push", &on_mirror]);
    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let out = other
        .cmd()
        .env("BERTH_REGISTRY_MIRRORS", &mirror.host)
        .args(["pull", "busybox:mirrored"])
        .output()
        .unwrap();
    assert_success(&out, "the pull through the mirror");
    assert!(
        mirror
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /v2/library/busybox/manifests/mirrored 200")),
        "{:#?}",
        mirror.requests()
    );
    assert_eq!(
        other.ok(&["run", "--rm", "busybox:mirrored"]),
        "pushed-and-pulled\n"
    );
    other.assert_clean();
}

#[test]
fn pull_on_a_terminal_shows_a_bar_per_layer_with_totals() {
    let Some(s) = ROOT.sandbox() else { return };
    if !berth_test_support::Tmux::needed() {
        return;
    }
    let reg = TestRegistry::start(RegistryConfig::default());
    let name = format!("{}/bars/app:1", reg.host);
    build_big(&s, &name, 3 << 20);
    ok(&s, &reg, &["push", &name]);
    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let rc = other.path().join("rc");
    let term = berth_test_support::Tmux::start(
        "pull",
        &format!(
            "BERTH_ROOT={} {} pull {name}; echo $? > {}; sleep 60",
            other.store().display(),
            env!("CARGO_BIN_EXE_berth"),
            rc.display()
        ),
        120,
        30,
    );
    let screen = term.wait(std::time::Duration::from_secs(30), |_| rc.exists());
    let screen = if screen.contains("Digest:") {
        screen
    } else {
        term.wait(std::time::Duration::from_secs(2), |s| s.contains("Digest:"))
    };
    assert_eq!(
        std::fs::read_to_string(&rc).unwrap().trim(),
        "0",
        "{screen}"
    );
    // Each blob ends as "<digest>: Done <its size>": the 3 MiB layer, busybox's, the config.
    let done: Vec<&str> = screen.lines().filter(|l| l.contains(": Done ")).collect();
    assert_eq!(done.len(), 3, "{screen}");
    assert!(done.iter().any(|l| l.contains("MiB")), "{screen}");
    assert!(screen.contains("Digest: sha256:"), "{screen}");
}

/// Builds `name`: busybox plus `/blob.bin`, `size` incompressible bytes (so a layer of about
/// that size whatever the compression); returns the bytes.
fn build_big(s: &Sandbox, name: &str, size: usize) -> Vec<u8> {
    let data = berth_test_support::pseudo_random_bytes(size as u64, size);
    let ctx = s.path().join(format!(
        "ctx-{}",
        berth_oci::Digest::of(name.as_bytes()).hex()
    ));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("blob.bin"), &data).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY blob.bin /blob.bin\n",
    )
    .unwrap();
    s.ok(&["build", "-q", "-t", name, ctx.to_str().unwrap()]);
    data
}

#[test]
fn a_blob_corrupted_on_the_registry_fails_the_pull_and_leaves_the_store_intact() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    let name = format!("{}/corrupt/app:1", reg.host);
    build_big(&s, &name, 1 << 20);
    ok(&s, &reg, &["push", &name]);
    // The pushed layer blob: the gzip of a tar holding `data`; flip a byte in its middle.
    let v: serde_json::Value = serde_json::from_str(&tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ],
        s.path(),
    ))
    .unwrap();
    let layer = v["layers"][1]["digest"].as_str().unwrap().to_owned();
    let hex = layer.trim_start_matches("sha256:");
    let file = reg
        .data_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    other.import_busybox("busybox");
    // (Image IDs, not the table: its CREATED column ages between two calls.)
    let images = || other.ok(&["images", "-q", "--no-trunc"]);
    let before = images();
    let err = fail(&other, &reg, &["pull", &name]);
    assert!(err.contains(hex) && err.contains("digest"), "{err}");
    assert_eq!(images(), before, "no new image");
    assert!(!other.store().join("blobs/sha256").join(hex).exists());
    other.assert_clean();
}

#[test]
fn a_registry_stopped_mid_pull_and_started_again_lets_the_next_pull_complete() {
    let Some(s) = ROOT.sandbox() else { return };
    let mut reg = TestRegistry::start(RegistryConfig::default());
    let name = format!("{}/stop/app:1", reg.host);
    let data = build_big(&s, &name, 16 << 20);
    ok(&s, &reg, &["push", &name]);
    // Through a proxy that gives about 4 MiB/s, so the pull is caught in the middle.
    let proxy = FaultProxy::with_rate(reg.host.clone(), Vec::new(), Some(4 << 20));
    let via = format!("{}/stop/app:1", proxy.host);
    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let pull = other
        .cmd()
        .args(["pull", &via])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if proxy.forwarded() > 4 << 20 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(proxy.forwarded() > 4 << 20, "the download started");
    reg.stop();
    let out = pull.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the pull fails: {err}");
    assert!(
        err.contains(&proxy.host),
        "the error names the registry: {err}"
    );
    other.assert_clean();
    reg.start_again();
    let out = other.cmd().args(["pull", &via]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("Already exists"),
        "what arrived before is kept: {err}"
    );
    let sum = other.ok(&["run", "--rm", &via, "sha256sum", "/blob.bin"]);
    assert!(sum.starts_with(berth_oci::Digest::of(&data).hex()), "{sum}");
    other.assert_clean();
}

#[test]
fn a_token_without_push_scope_gives_a_clear_error() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig {
        token_users: vec![
            ("writer".into(), "writer-pass".into()),
            ("reader".into(), "reader-pass".into()),
        ],
        ..Default::default()
    });
    let name = format!("{}/scoped/app:1", reg.host);
    build_app(&s, &name);
    let login = |user: &str, pass: &str| {
        use std::io::Write;
        let mut child = s
            .cmd()
            .env("DOCKER_CONFIG", s.path().join("docker-config"))
            .args(["login", "-u", user, "--password-stdin", &reg.host])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{pass}").unwrap();
        assert!(child.wait_with_output().unwrap().status.success());
    };
    login("writer", "writer-pass");
    ok(&s, &reg, &["push", &name]);
    login("reader", "reader-pass");
    // The reader may pull what the writer pushed, but not push.
    let other_name = format!("{}/scoped/app:2", reg.host);
    s.ok(&["tag", &name, &other_name]);
    let err = fail(&s, &reg, &["push", &other_name]);
    assert!(
        err.contains("scoped/app") && (err.contains("denied") || err.contains("permission")),
        "{err}"
    );
    assert!(!err.contains("reader-pass"), "{err}");
    s.ok(&["rmi", &name]);
    ok(&s, &reg, &["pull", &name]);
}

#[test]
fn the_first_push_compresses_while_uploading_and_keeps_the_compressed_blob() {
    let Some(s) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    let name = format!("{}/stream/app:1", reg.host);
    build_big(&s, &name, 20 << 20);
    let out = berth(&s, &reg, &["push", &name]);
    assert!(out.status.success());
    let pushed = digest_of(&String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Already exists"),
        "the streamed layers are reported as pushed, not as found: {stderr}"
    );
    // The layer's compressed blob is kept, and it is what the registry has.
    let records: Vec<serde_json::Value> = std::fs::read_dir(s.store().join("compressed"))
        .unwrap()
        .flatten()
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "busybox's layer and the app's");
    let inspect = tool(
        "skopeo",
        &["inspect", "--tls-verify=false", &format!("docker://{name}")],
        s.path(),
    );
    assert!(inspect.contains(&pushed));
    for r in &records {
        let digest = r["digest"].as_str().unwrap();
        assert!(inspect.contains(digest), "{digest} in {inspect}");
        assert!(
            s.store().join("blobs/sha256").join(&digest[7..]).is_file(),
            "the compressed blob is kept"
        );
    }
    // Each was sent in PATCH chunks without a mount attempt (nothing could hold it yet),
    // then closed with a PUT naming the digest the compressor computed at the end.
    let served = reg.requests();
    assert!(
        served
            .iter()
            .filter(|r| r.starts_with("POST /v2/stream/app/blobs/uploads/"))
            .all(|r| !r.contains("mount=")),
        "{served:#?}"
    );
    for r in &records {
        let digest = format!("digest={}", r["digest"].as_str().unwrap());
        assert!(
            served
                .iter()
                .any(|l| l.starts_with("PUT ") && l.contains(&digest) && l.ends_with(" 201")),
            "{digest}: {served:#?}"
        );
    }
    // A second push compresses and sends nothing.
    let before = reg.requests().len();
    ok(&s, &reg, &["push", &name]);
    let during = reg.requests()[before..].to_vec();
    assert!(
        !during.iter().any(|r| r.starts_with("PATCH ")),
        "{during:#?}"
    );
}

/// The `RepoDigests` of `image` as `berth inspect` shows them.
fn repo_digests(s: &Sandbox, image: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", image])).unwrap();
    v[0]["RepoDigests"]
        .as_array()
        .expect("RepoDigests is an array")
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn repo_digests_record_each_push_and_pull_and_go_with_the_image() {
    let reg = TestRegistry::start(RegistryConfig::default());
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth")).with_busybox();
    let team = format!("{}/team/app:1", reg.host);
    s.ok(&["tag", "busybox", &team]);
    assert!(repo_digests(&s, &team).is_empty());
    // A push records the digest of the manifest as the registry stores it (its layers
    // compressed: not the store's manifest).
    let pushed = digest_of(&ok(&s, &reg, &["push", &team]));
    let local: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", &team])).unwrap();
    assert_ne!(local[0]["Descriptor"]["digest"], pushed.as_str());
    let in_team = format!("{}/team/app@{pushed}", reg.host);
    assert_eq!(repo_digests(&s, &team), vec![in_team.clone()]);
    assert_eq!(repo_digests(&s, "busybox"), vec![in_team.clone()]);
    // A second push of the same image changes nothing; pushes to four more repositories at
    // once (four processes writing the store's index) are each recorded.
    ok(&s, &reg, &["push", &team]);
    let others: Vec<String> = (0..4)
        .map(|i| format!("{}/other{i}/app:2", reg.host))
        .collect();
    std::thread::scope(|scope| {
        for name in &others {
            let (s, reg) = (&s, &reg);
            scope.spawn(move || ok(s, reg, &["push", "busybox", name]));
        }
    });
    let all = repo_digests(&s, "busybox");
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(all[0], in_team);
    for i in 0..4 {
        assert!(
            all.contains(&format!("{}/other{i}/app@{pushed}", reg.host)),
            "{all:?}"
        );
    }
    // A pull records where it came from; the digest is the one the push made.
    let puller = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let out = ok(&puller, &reg, &["pull", &team]);
    assert!(out.contains(&format!("Digest: {pushed}")), "{out}");
    assert_eq!(repo_digests(&puller, &team), vec![in_team.clone()]);
    // A name the image gets later shares them; a pull by digest shows once.
    puller.ok(&["tag", &team, "local:1"]);
    assert_eq!(repo_digests(&puller, "local:1"), vec![in_team.clone()]);
    ok(&puller, &reg, &["pull", &in_team]);
    assert_eq!(repo_digests(&puller, &team), vec![in_team.clone()]);
    // Removing the last tag of a repository drops that repository's digests (Docker's
    // rule); removing the image drops them all.
    s.ok(&["rmi", &team]);
    let left = repo_digests(&s, "busybox");
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(!left.contains(&in_team), "{left:?}");
    s.ok(&["rmi", "-f", "busybox"]);
    let index = std::fs::read_to_string(s.store().join("index.json")).unwrap();
    assert!(!index.contains(&pushed), "{index}");
    // Pulled again after its removal, the image has its digest again, once.
    let again = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    ok(&again, &reg, &["pull", &team]);
    again.ok(&["rmi", &team]);
    assert!(
        !std::fs::read_to_string(again.store().join("index.json"))
            .unwrap()
            .contains(&pushed)
    );
    ok(&again, &reg, &["pull", &team]);
    assert_eq!(repo_digests(&again, &team), vec![in_team.clone()]);
    // `copy` records both ways too.
    let copied = format!("{}/copied/app:1", reg.host);
    ok(
        &again,
        &reg,
        &["copy", &team, &format!("docker://{copied}")],
    );
    assert_eq!(
        repo_digests(&again, &team),
        [in_team.clone(), format!("{}/copied/app@{pushed}", reg.host)]
    );
    ok(
        &puller,
        &reg,
        &["copy", &format!("docker://{copied}"), "store:mine:1"],
    );
    assert!(
        repo_digests(&puller, "mine:1").contains(&format!("{}/copied/app@{pushed}", reg.host)),
        "{:?}",
        repo_digests(&puller, "mine:1")
    );
    s.assert_clean();
    puller.assert_clean();
    again.assert_clean();
}
