//! The build context: .dockerignore applied to a real tree, digests that ignore times,
//! and the stat index that makes an unchanged rescan read no file contents.

use std::path::Path;

use berth_builder::context::{StatIndex, digest_selection, load_matcher, scan};

fn write(root: &Path, path: &str, data: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "Dockerfile", "FROM a\n");
    write(r, "main.go", "package main");
    write(r, "pkg/util.go", "package pkg");
    write(r, "README.md", "readme");
    write(r, "CHANGES.md", "changes");
    write(r, "node_modules/x/index.js", "js");
    write(r, "docs/keep.md", "keep");
    write(r, "docs/drop.md", "drop");
    write(r, ".git/HEAD", "ref");
    std::os::unix::fs::symlink("/etc/passwd", r.join("out-link")).unwrap();
    std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
    dir
}

#[test]
fn dockerignore_rules_apply_to_the_tree() {
    let dir = tree();
    write(
        dir.path(),
        ".dockerignore",
        "# comment\n.git\nnode_modules\n*.md\n!README*.md\ndocs\n!docs/keep.md\n/main.go\n",
    );
    let m = load_matcher(dir.path(), None).unwrap();
    let s = scan(dir.path(), &m, &mut StatIndex::default()).unwrap();
    let paths: Vec<&str> = s.entries.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            ".dockerignore",
            "Dockerfile",
            "README.md",
            "docs/keep.md",
            "loop",
            "out-link",
            "pkg",
            "pkg/util.go"
        ]
    );
    assert!(
        matches!(&s.entries["out-link"].kind, berth_builder::context::EntryKind::Symlink(t) if t == "/etc/passwd"),
        "links are recorded, never followed"
    );
}

#[test]
fn a_dockerfile_specific_ignore_file_wins() {
    let dir = tree();
    write(dir.path(), ".dockerignore", "*.go\n");
    write(dir.path(), "build/app.Dockerfile", "FROM a\n");
    write(dir.path(), "build/app.Dockerfile.dockerignore", "pkg\n");
    let m = load_matcher(dir.path(), Some(&dir.path().join("build/app.Dockerfile"))).unwrap();
    assert!(m.excluded("pkg/util.go") && !m.excluded("main.go"));
    let m = load_matcher(dir.path(), Some(&dir.path().join("Dockerfile"))).unwrap();
    assert!(m.excluded("main.go"));
    // Buildah's and Podman's `.containerignore` comes before `.dockerignore`.
    write(dir.path(), ".containerignore", "pkg\n");
    let m = load_matcher(dir.path(), Some(&dir.path().join("Dockerfile"))).unwrap();
    assert!(m.excluded("pkg/util.go") && !m.excluded("main.go"));
}

#[test]
fn unchanged_rescan_reads_nothing_and_digests_ignore_times() {
    let dir = tree();
    let m = load_matcher(dir.path(), None).unwrap();
    let mut index = StatIndex::default();
    let cold = scan(dir.path(), &m, &mut index).unwrap();
    assert_eq!(cold.stats.files_read, cold.stats.files);
    let saved = StatIndex::from_bytes(&index.to_bytes());
    let mut index = saved;
    let warm = scan(dir.path(), &m, &mut index).unwrap();
    assert_eq!(
        warm.stats.files_read, 0,
        "an unchanged context reads no file contents"
    );
    let all =
        |s: &berth_builder::context::ScannedContext| digest_selection(s.entries.values(), None);
    assert_eq!(all(&cold), all(&warm));

    // touch: re-read (stat changed) but the same digest.
    let f = std::fs::File::options()
        .append(true)
        .open(dir.path().join("main.go"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    let touched = scan(dir.path(), &m, &mut index).unwrap();
    assert_eq!(touched.stats.files_read, 1);
    assert_eq!(all(&touched), all(&cold), "mtimes never reach the digest");

    // A content change or --chown changes it.
    write(dir.path(), "main.go", "package main // changed");
    let changed = scan(dir.path(), &m, &mut index).unwrap();
    assert_ne!(all(&changed), all(&cold));
    assert_ne!(
        digest_selection(changed.entries.values(), Some((1000, 1000))),
        all(&changed)
    );
}

/// A context past its limits (entries, path length, depth) is refused with an error that
/// names the limit, before anything is read; an excluded directory does not count.
#[test]
fn context_limits_are_enforced_with_a_clear_error() {
    use berth_builder::context::{ContextError, Limits, Matcher, scan_within};
    let limits = Limits {
        entries: 20,
        path_len: 64,
        depth: 4,
    };
    let scan = |dir: &Path, ignore: &str| {
        scan_within(
            dir,
            &Matcher::parse(ignore).unwrap(),
            &mut StatIndex::default(),
            &limits,
        )
    };
    let too_large = |r: Result<_, ContextError>, what: &str| match r {
        Err(e @ ContextError::TooLarge { .. }) => {
            let text = e.to_string();
            assert!(text.contains(what), "{text}");
            assert!(text.contains(".dockerignore"), "{text}");
        }
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("accepted a context past its limits ({what})"),
    };
    let many = tempfile::tempdir().unwrap();
    for i in 0..30 {
        write(many.path(), &format!("big/f{i}"), "x");
    }
    too_large(scan(many.path(), ""), "more than 20 entries");
    assert!(scan(many.path(), "big\n").is_ok());

    let long = tempfile::tempdir().unwrap();
    write(long.path(), &format!("{}/f", "n".repeat(70)), "x");
    too_large(scan(long.path(), ""), "longer than 64 bytes");

    let deep = tempfile::tempdir().unwrap();
    write(deep.path(), "a/b/c/d/e/f", "x");
    too_large(scan(deep.path(), ""), "more than 4 directories deep");
    write(deep.path(), "a/b/c/d/e/f", "x");
    assert!(scan(deep.path(), "a/b/c\n").is_ok());
}

/// The context's `.dockerignore` is the context's: a symlink is resolved inside the context
/// (never reaching a host file), a FIFO or a device is refused without blocking, and a file
/// past the size limit is an error, not memory exhaustion.
#[test]
fn the_contexts_ignore_file_stays_in_the_context() {
    let host = tempfile::tempdir().unwrap();
    write(host.path(), "outside", "main.go\n");
    for target in outside_links(host.path()) {
        let dir = tree();
        std::os::unix::fs::symlink(&target, dir.path().join(".dockerignore")).unwrap();
        let m = load_matcher(dir.path(), None).unwrap();
        assert!(!m.excluded("main.go"), "{target}: a host file was read");
    }
    // A link inside the context is followed, as BuildKit does.
    let dir = tree();
    write(dir.path(), "ignore/real", "main.go\n");
    std::os::unix::fs::symlink("/ignore/real", dir.path().join(".dockerignore")).unwrap();
    assert!(load_matcher(dir.path(), None).unwrap().excluded("main.go"));
    for make in ["fifo", "dev"] {
        let dir = tree();
        special(&dir.path().join(".dockerignore"), make);
        let start = std::time::Instant::now();
        // A FIFO is refused; `/dev/zero` resolves inside the context, where it is missing.
        match load_matcher(dir.path(), None) {
            Err(_) => assert_eq!(make, "fifo"),
            Ok(m) => assert!(make == "dev" && !m.excluded("main.go")),
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
    let dir = tree();
    std::fs::write(dir.path().join(".dockerignore"), vec![b'#'; 5 << 20]).unwrap();
    assert!(load_matcher(dir.path(), None).is_err());
}

/// The context's Dockerfile (the default one, or `-f` naming a path inside the context)
/// follows the same rules; `-f` naming a file outside the context is the user's and is read
/// as given.
#[test]
fn the_contexts_dockerfile_stays_in_the_context() {
    use berth_builder::context::{MAX_DOCKERFILE, read_dockerfile};
    let host = tempfile::tempdir().unwrap();
    write(host.path(), "outside", "main.go\n");
    for target in outside_links(host.path()) {
        let dir = tree();
        std::fs::remove_file(dir.path().join("Dockerfile")).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("Dockerfile")).unwrap();
        let e = read_dockerfile(dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("Dockerfile"), "{e}");
        for named in ["Dockerfile", "x/../Dockerfile", "./Dockerfile"] {
            let df = dir.path().join(named);
            assert!(read_dockerfile(dir.path(), Some(&df)).is_err(), "{named}");
        }
    }
    for make in ["fifo", "dev"] {
        let dir = tree();
        std::fs::remove_file(dir.path().join("Dockerfile")).unwrap();
        special(&dir.path().join("Dockerfile"), make);
        let start = std::time::Instant::now();
        assert!(read_dockerfile(dir.path(), None).is_err(), "{make}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
    let dir = tree();
    let big = vec![b'#'; MAX_DOCKERFILE as usize + 1];
    std::fs::write(dir.path().join("Dockerfile"), &big).unwrap();
    let e = read_dockerfile(dir.path(), None).unwrap_err().to_string();
    assert!(e.contains("limit"), "{e}");
    let dir = tree();
    assert_eq!(
        read_dockerfile(dir.path(), Some(&host.path().join("outside"))).unwrap(),
        b"main.go\n"
    );
}

/// Symlinks that point at `outside` from a context: absolute, and climbing far above it.
fn outside_links(host: &Path) -> [String; 2] {
    let outside = host.join("outside").display().to_string();
    [
        outside.clone(),
        format!("../../../../../../../../..{outside}"),
    ]
}

/// Makes a FIFO (`fifo`) or a link to `/dev/zero` (`dev`) at `p`.
fn special(p: &Path, make: &str) {
    if make == "fifo" {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
    } else {
        std::os::unix::fs::symlink("/dev/zero", p).unwrap();
    }
}
