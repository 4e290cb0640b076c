//! Entitlements: what a Dockerfile may ask for is bounded by the command line. `RUN
//! --security=insecure` needs `--allow security.insecure`, `RUN --network=host` needs `--allow
//! network.host`, and `--network none` holds for every step that does not have the
//! entitlement. A refused build fails before its first step runs, cached or not, with an
//! error that names the flag.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_test_support::Sandbox;

fn sandbox() -> Option<Sandbox> {
    berth_test_support::root_sandbox(env!("CARGO_BIN_EXE_berth"))
}

fn context(s: &Sandbox, name: &str, dockerfile: &str) -> PathBuf {
    let ctx = s.path().join(format!("ctx-{name}"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    ctx
}

fn build(s: &Sandbox, ctx: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    s.run(&args)
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A service on the host's loopback that counts the connections it gets.
fn host_service() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = std::io::Write::write_all(
                &mut c,
                b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            );
        }
    });
    (port, hits)
}

#[test]
fn security_insecure_needs_the_entitlement_and_fails_before_any_step() {
    let Some(s) = sandbox() else { return };
    let ctx = context(
        &s,
        "insecure",
        "FROM busybox\nRUN echo first-step-ran\nRUN --security=insecure grep CapEff /proc/self/status\n",
    );
    let o = build(&s, &ctx, &["-t", "ins:1"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("--allow security.insecure"), "{t}");
    assert!(
        t.contains("Dockerfile:3"),
        "the error points at the line: {t}"
    );
    assert!(
        !t.contains("[stage-0 1/2]") && !t.contains("#1 first-step-ran"),
        "nothing runs before the refusal: {t}"
    );
    s.assert_clean();

    // Granted: every capability (a full effective set, not Docker's default 00000000a80425fb).
    let o = build(&s, &ctx, &["-t", "ins:1", "--allow", "security.insecure"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let caps = t
        .lines()
        .find_map(|l| l.split("CapEff:").nth(1))
        .expect("CapEff printed")
        .trim()
        .to_owned();
    assert_ne!(caps, "00000000a80425fb", "{t}");
    assert!(
        u64::from_str_radix(&caps, 16).unwrap().count_ones() > 35,
        "{caps}"
    );

    // The step is cached now; the cache does not stand in for the entitlement.
    let o = build(&s, &ctx, &["-t", "ins:1"]);
    let t = text(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a cached step still needs it: {t}"
    );
    assert!(t.contains("--allow security.insecure"), "{t}");
}

#[test]
fn run_network_host_needs_the_entitlement_even_when_the_build_is_isolated() {
    let Some(s) = sandbox() else { return };
    let (port, hits) = host_service();
    let wget = format!("echo GET | nc -w 3 127.0.0.1 {port} || echo unreachable");
    let ctx = context(
        &s,
        "nethost",
        &format!("FROM busybox\nRUN --network=host {wget}\n"),
    );
    let o = build(&s, &ctx, &["--network", "none"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("--allow network.host"), "{t}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the host's service was reached"
    );

    // Without --network none the default is still the host's network, but RUN's own flag
    // still needs the entitlement.
    let o = build(&s, &ctx, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    let o = build(
        &s,
        &ctx,
        &["--network", "none", "--allow", "network.host", "--no-cache"],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("hello"),
        "granted, the step reaches the host: {t}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn network_none_holds_for_steps_that_ask_for_the_default() {
    let Some(s) = sandbox() else { return };
    let (port, hits) = host_service();
    let wget = format!("echo GET | nc -w 3 127.0.0.1 {port} || echo unreachable");
    for (name, flag) in [("plain", ""), ("default", "--network=default ")] {
        let ctx = context(&s, name, &format!("FROM busybox\nRUN {flag}{wget}\n"));
        let o = build(&s, &ctx, &["--network", "none", "--no-cache"]);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert!(t.contains("unreachable"), "{name}: {t}");
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "{name}: the host was reached"
        );
    }
    // ADD's downloads are berth's own, on the host's network: none of them under none.
    let ctx = context(
        &s,
        "add-url",
        &format!("FROM busybox\nADD http://127.0.0.1:{port}/f /f\n"),
    );
    let o = build(&s, &ctx, &["--network", "none"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--network none"), "{}", text(&o));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "ADD reached the host");
    // RUN --network=none isolates even when the build has the host's network.
    let ctx = context(
        &s,
        "none",
        &format!("FROM busybox\nRUN --network=none {wget}\n"),
    );
    let o = build(&s, &ctx, &["--allow", "network.host"]);
    assert!(text(&o).contains("unreachable"), "{}", text(&o));
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[test]
fn an_onbuild_trigger_of_a_base_image_needs_the_entitlement_too() {
    let Some(s) = sandbox() else { return };
    let base = context(
        &s,
        "onbuild-base",
        "FROM busybox\nONBUILD RUN --security=insecure echo trigger-ran\n",
    );
    let o = build(&s, &base, &["-t", "trigger-base:1"]);
    assert!(o.status.success(), "{}", text(&o));
    let child = context(&s, "onbuild-child", "FROM trigger-base:1\nRUN echo child\n");
    let o = build(&s, &child, &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("--allow security.insecure"), "{t}");
    assert!(!t.contains("trigger-ran\n"), "{t}");
}

#[test]
fn an_unknown_entitlement_is_a_usage_error() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let ctx = context(&s, "unknown", "FROM scratch\n");
    let o = build(&s, &ctx, &["--allow", "device"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("network.host"), "{}", text(&o));
}
