//! Soak: many cached rebuilds and many `run --rm` in a row leave nothing growing: not the
//! store's size, not the mounts, not berth's cgroups, not the open files of the system, not
//! `tmp/`, `/dev/shm` or processes. `BERTH_SOAK_BUILDS` and `BERTH_SOAK_RUNS` set the counts
//! (10 each in `cargo test`; `scripts/check soak` runs 500 and 200).

// A test prints through the harness; the CLI's own rule on output (cli/clippy.toml) is not
// for it.
#![allow(clippy::disallowed_macros)]

use std::path::Path;

use berth_test_support::Tier;

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes of every file under `dir` (allocated blocks, so sparse and hard-linked files count
/// as the disk sees them, once per inode).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| seen.insert((m.dev(), m.ino())))
        .map(|m| m.blocks() * 512)
        .sum()
}

#[derive(Debug, PartialEq)]
struct Footprint {
    mounts: usize,
    cgroups: usize,
    shm: usize,
    tmp: usize,
    processes: usize,
}

fn footprint(store: &Path) -> Footprint {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    let mut cgroups = 0;
    for base in [
        "/sys/fs/cgroup/berth",
        "/sys/fs/cgroup/unified/berth",
        "/sys/fs/cgroup/memory/berth",
        "/sys/fs/cgroup/pids/berth",
        "/sys/fs/cgroup/cpu,cpuacct/berth",
    ] {
        cgroups += walkdir::WalkDir::new(base)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_dir())
            .count();
    }
    let shm = std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().count())
        .unwrap_or(0);
    let tmp = std::fs::read_dir(store.join("tmp"))
        .map(|d| d.flatten().count())
        .unwrap_or(0);
    let processes = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path().join("root")).is_ok_and(|r| r.starts_with(store))
                || std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "berth")
        })
        .count();
    Footprint {
        mounts,
        cgroups,
        shm,
        tmp,
        processes,
    }
}

/// Open files of the whole system (the first field of `/proc/sys/fs/file-nr`).
fn open_files() -> i64 {
    std::fs::read_to_string("/proc/sys/fs/file-nr")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn cached_rebuilds_and_runs_leave_nothing_growing() {
    let Some(s) = ROOT.sandbox() else { return };
    let builds = count("BERTH_SOAK_BUILDS", 10);
    let runs = count("BERTH_SOAK_RUNS", 10);
    let ctx = s.path().join("ctx");
    std::fs::create_dir_all(ctx.join("src")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox AS b\nRUN echo built > /b\n\
         FROM busybox\nCOPY src /src\nRUN --mount=type=cache,target=/cache cat /src/* > /all\n\
         COPY --from=b /b /b\nCMD [\"cat\", \"/all\"]\n",
    )
    .unwrap();
    for i in 0..20 {
        std::fs::write(ctx.join(format!("src/f{i}")), format!("file {i}\n")).unwrap();
    }
    let build = ["build", "-q", "-t", "soak:1", ctx.to_str().unwrap()];
    let id = s.ok(&build);
    // One cached rebuild and one run first, so caches and lazily made directories exist.
    assert_eq!(s.ok(&build), id);
    s.ok(&["run", "--rm", "soak:1", "true"]);
    let size_before = disk_usage(&s.store());
    let files_before = open_files();
    let before = footprint(&s.store());
    let started = std::time::Instant::now();
    for i in 0..builds {
        assert_eq!(s.ok(&build), id, "rebuild {i} gave another image");
    }
    let build_time = started.elapsed();
    let started = std::time::Instant::now();
    for i in 0..runs {
        let out = s.run(&["run", "--rm", "soak:1"]);
        assert!(
            out.status.success(),
            "run {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.stdout.len(),
            150,
            "run {i}: the 20 files, 7 or 8 bytes each"
        );
    }
    let run_time = started.elapsed();
    let after = footprint(&s.store());
    let size_after = disk_usage(&s.store());
    let files_after = open_files();
    assert_eq!(
        after, before,
        "something grew over {builds} rebuilds and {runs} runs"
    );
    // The store grows by nothing but the container records' churn (none are kept: --rm).
    assert!(
        size_after <= size_before + 64 * 1024,
        "the store grew from {size_before} to {size_after} bytes"
    );
    // Other processes of the machine open and close files meanwhile: a margin, not zero.
    assert!(
        files_after - files_before < 256,
        "open files of the system grew from {files_before} to {files_after}"
    );
    s.assert_clean();
    eprintln!(
        "{builds} cached rebuilds in {:.1} s ({:.0} ms each), {runs} runs in {:.1} s ({:.0} ms each); \
         store {size_before} -> {size_after} bytes, open files {files_before} -> {files_after}, {after:?}",
        build_time.as_secs_f64(),
        build_time.as_secs_f64() * 1000.0 / builds.max(1) as f64,
        run_time.as_secs_f64(),
        run_time.as_secs_f64() * 1000.0 / runs.max(1) as f64,
    );
}
