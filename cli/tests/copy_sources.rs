//! COPY and ADD sources from the build context are resolved among the entries `.dockerignore`
//! leaves, through symlinks (a source's own, a directory on its way, a wildcard's match),
//! and keyed by what they resolve to.

use std::os::unix::fs::symlink;

use berth_test_support::{Sandbox, Tier};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

fn build(s: &Sandbox, ctx: &std::path::Path, dockerfile: &str) -> (bool, String) {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let o = s.run(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "t",
        ctx.to_str().unwrap(),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// Through a symlinked directory, and through wildcards, only included entries are copied;
/// a link to an ignored file is not found however it is reached.
#[test]
fn symlinked_and_wildcard_sources_reach_included_entries_only() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("links", &[]);
    std::fs::create_dir_all(ctx.join("real")).unwrap();
    std::fs::create_dir_all(ctx.join("secret")).unwrap();
    std::fs::write(ctx.join("real/f.txt"), "F\n").unwrap();
    std::fs::write(ctx.join("real/g.txt"), "G\n").unwrap();
    std::fs::write(ctx.join("secret/key"), "SECRET-KEY-4242\n").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "secret\n").unwrap();
    symlink("real", ctx.join("dir")).unwrap();
    symlink("secret", ctx.join("sdir")).unwrap();
    symlink("../real/../secret/key", ctx.join("real/k.lnk")).unwrap();

    // A file through a symlinked parent, and a wildcard under it.
    let (ok, t) = build(
        &s,
        &ctx,
        "FROM busybox\nCOPY dir/f.txt /one\nCOPY dir/*.txt /many/\n",
    );
    assert!(ok, "{t}");
    let o = s.ok(&[
        "run",
        "--rm",
        "t",
        "cat",
        "/one",
        "/many/f.txt",
        "/many/g.txt",
    ]);
    assert_eq!(o, "F\nF\nG\n");

    for df in [
        "FROM busybox\nCOPY sdir/key /k\n",
        "FROM busybox\nCOPY sdir/ /k/\n",
        "FROM busybox\nCOPY real/k.lnk /k\n",
        "FROM busybox\nCOPY real/*.lnk /k/\n",
    ] {
        let (ok, t) = build(&s, &ctx, df);
        assert!(!ok && t.contains("not found"), "{df}{t}");
        assert!(!t.contains("SECRET-KEY-4242"), "{df}{t}");
    }
}

/// A source through a symlinked directory is keyed by the files it reaches.
#[test]
fn a_source_through_a_symlinked_directory_is_keyed_by_its_files() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("key", &[]);
    std::fs::create_dir_all(ctx.join("real")).unwrap();
    std::fs::write(ctx.join("real/f"), "OLD\n").unwrap();
    symlink("real", ctx.join("dir")).unwrap();
    let df = "FROM busybox\nCOPY dir/f /f\nCOPY dir/* /w/\n";
    let (ok, t) = build(&s, &ctx, df);
    assert!(ok, "{t}");
    std::fs::write(ctx.join("real/f"), "NEW\n").unwrap();
    let (ok, t) = build(&s, &ctx, df);
    assert!(ok, "{t}");
    assert_eq!(
        s.ok(&["run", "--rm", "t", "cat", "/f", "/w/f"]),
        "NEW\nNEW\n"
    );
}
