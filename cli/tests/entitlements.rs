//! Entitlements: what a Dockerfile may ask for is bounded by the command line. `RUN
//! --security=insecure` needs `--allow security.insecure`, `RUN --network=host` needs `--allow
//! network.host`, and `--network none` holds for every step that does not have the
//! entitlement. A refused build fails before its first step runs, cached or not, with an
//! error that names the flag.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_test_support::{Sandbox, Tier, printed};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

fn build(s: &Sandbox, ctx: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    s.run(&args)
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
    let Some(s) = ROOT.sandbox() else { return };
    let dockerfile = "FROM busybox\nRUN echo first-step-ran\nRUN --security=insecure grep CapEff /proc/self/status\n";
    let ctx = s.context("insecure", &[("Dockerfile", dockerfile)]);
    let o = build(&s, &ctx, &["-t", "ins:1"]);
    let t = printed(&o);
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
    let t = printed(&o);
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
    let t = printed(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a cached step still needs it: {t}"
    );
    assert!(t.contains("--allow security.insecure"), "{t}");
}

#[test]
fn run_network_host_needs_the_entitlement_even_when_the_build_is_isolated() {
    let Some(s) = ROOT.sandbox() else { return };
    let (port, hits) = host_service();
    let wget = format!("echo GET | nc -w 3 127.0.0.1 {port} || echo unreachable");
    let ctx = s.context(
        "nethost",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN --network=host {wget}\n"),
        )],
    );
    let o = build(&s, &ctx, &["--network", "none"]);
    let t = printed(&o);
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
    assert_eq!(o.status.code(), Some(1), "{}", printed(&o));
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    let o = build(
        &s,
        &ctx,
        &["--network", "none", "--allow", "network.host", "--no-cache"],
    );
    let t = printed(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("hello"),
        "granted, the step reaches the host: {t}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn network_none_holds_for_steps_that_ask_for_the_default() {
    let Some(s) = ROOT.sandbox() else { return };
    let (port, hits) = host_service();
    let wget = format!("echo GET | nc -w 3 127.0.0.1 {port} || echo unreachable");
    for (name, flag) in [("plain", ""), ("default", "--network=default ")] {
        let ctx = s.context(
            name,
            &[("Dockerfile", &format!("FROM busybox\nRUN {flag}{wget}\n"))],
        );
        let o = build(&s, &ctx, &["--network", "none", "--no-cache"]);
        let t = printed(&o);
        assert!(o.status.success(), "{t}");
        assert!(t.contains("unreachable"), "{name}: {t}");
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "{name}: the host was reached"
        );
    }
    // ADD's downloads are berth's own, on the host's network: none of them under none.
    let ctx = s.context(
        "add-url",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD http://127.0.0.1:{port}/f /f\n"),
        )],
    );
    let o = build(&s, &ctx, &["--network", "none"]);
    assert_eq!(o.status.code(), Some(1), "{}", printed(&o));
    assert!(printed(&o).contains("--network none"), "{}", printed(&o));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "ADD reached the host");
    // RUN --network=none isolates even when the build has the host's network.
    let ctx = s.context(
        "none",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN --network=none {wget}\n"),
        )],
    );
    let o = build(&s, &ctx, &["--allow", "network.host"]);
    assert!(printed(&o).contains("unreachable"), "{}", printed(&o));
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[test]
fn an_onbuild_trigger_of_a_base_image_needs_the_entitlement_too() {
    let Some(s) = ROOT.sandbox() else { return };
    let base = s.context(
        "onbuild-base",
        &[(
            "Dockerfile",
            "FROM busybox\nONBUILD RUN --security=insecure echo trigger-ran\n",
        )],
    );
    let o = build(&s, &base, &["-t", "trigger-base:1"]);
    assert!(o.status.success(), "{}", printed(&o));
    let child = s.context(
        "onbuild-child",
        &[("Dockerfile", "FROM trigger-base:1\nRUN echo child\n")],
    );
    let o = build(&s, &child, &[]);
    let t = printed(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("--allow security.insecure"), "{t}");
    assert!(!t.contains("trigger-ran\n"), "{t}");
}

#[test]
fn an_unknown_entitlement_is_a_usage_error() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let ctx = s.context("unknown", &[("Dockerfile", "FROM scratch\n")]);
    let o = build(&s, &ctx, &["--allow", "device"]);
    assert_eq!(o.status.code(), Some(2), "{}", printed(&o));
    assert!(printed(&o).contains("network.host"), "{}", printed(&o));
}
