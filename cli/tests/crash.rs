//! kill -9 in the middle of `import` and `load`: the store stays clean, nothing is left in
//! `tmp/` after the next start, and the next command works. `BERTH_CRASH_TRIALS` sets the
//! number of trials (default 20; the reliability suite runs 200).

// A test prints through the harness; the CLI's own rule on output (cli/clippy.toml) is not
// for it.
#![allow(clippy::disallowed_macros)]

use std::time::Duration;

use berth_test_support::Sandbox;

/// A tiny deterministic generator, so a failing trial can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn kill_9_during_import_and_load_leaves_a_clean_store() {
    let trials: u64 = std::env::var("BERTH_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    // A rootfs big enough that the kill lands in the middle: busybox plus 24 MiB of files.
    let rootfs = s.path().join("big");
    berth_test_support::busybox_rootfs(&rootfs);
    let mut rng = Lcg(0x5eed);
    for i in 0..24 {
        let data = berth_test_support::pseudo_random_bytes(i + 1, 1 << 20);
        std::fs::write(rootfs.join(format!("tmp/blob{i}")), data).unwrap();
    }
    s.ok(&["import", rootfs.to_str().unwrap(), "seed"]);
    s.ok(&["save", "-o", "seed.tar", "seed"]);
    let archive = s.path().join("seed.tar");
    // Kills land uniformly within the time a warm run of each command takes here.
    let timed = |args: &[&str]| {
        let started = std::time::Instant::now();
        s.ok(args);
        (started.elapsed().as_millis() as u64).max(10)
    };
    let import_ms = timed(&["import", rootfs.to_str().unwrap(), "warm"]);
    s.ok(&["rmi", "seed"]);
    let load_ms = timed(&["load", "-i", archive.to_str().unwrap()]);
    let mut completed = 0;
    for trial in 0..trials {
        let (args, name): (Vec<String>, String) = if trial % 2 == 0 {
            (
                vec![
                    "import".into(),
                    rootfs.display().to_string(),
                    format!("imp:{trial}"),
                ],
                format!("imp:{trial}"),
            )
        } else {
            (
                vec!["load".into(), "-i".into(), archive.display().to_string()],
                "seed".into(),
            )
        };
        if trial % 2 == 1 {
            s.run(&["rmi", "seed"]);
        }
        let mut child = s
            .cmd()
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let window_ms = if trial % 2 == 0 { import_ms } else { load_ms };
        std::thread::sleep(Duration::from_millis(rng.next() % window_ms));
        let killed = child.try_wait().unwrap().is_none();
        if killed {
            child.kill().unwrap(); // SIGKILL
        }
        let status = child.wait().unwrap();
        if !killed && status.success() {
            completed += 1;
        }
        s.assert_clean();
        let tmp = std::fs::read_dir(s.store().join("tmp")).unwrap().count();
        assert_eq!(tmp, 0, "trial {trial}: tmp/ not cleaned by the next start");
        // The same command completes afterwards and gives a valid image.
        s.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        s.ok(&["inspect", &name]);
    }
    eprintln!("{trials} trials, {completed} finished before the kill");
}

/// Mount points under `dir` that are still mounted.
fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir))
        .map(str::to_owned)
        .collect()
}

/// Processes whose root directory is inside `dir` (containers outliving a killed berth).
fn processes_rooted_under(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(root) = std::fs::read_link(e.path().join("root"))
            && root.starts_with(dir)
        {
            found.push(format!("{name} ({})", root.display()));
        }
    }
    found
}

/// kill -9 in the middle of `build`, `pull`, `push`, `rmi` and `system prune`, in turn. After
/// each: `system check` is clean, the next start leaves `tmp/` empty, no mount or container
/// process of the store is left, and the same command then succeeds; a build gives the image
/// ID of the reference build (SOURCE_DATE_EPOCH makes it reproducible).
#[test]
fn kill_9_during_build_pull_push_rmi_and_prune_leaves_a_clean_store() {
    if !berth_test_support::needs_root("runs containers") {
        return;
    }
    let trials: u64 = std::env::var("BERTH_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let reg = berth_test_support::TestRegistry::start(Default::default());
    let epoch = |c: &mut std::process::Command| {
        c.env("SOURCE_DATE_EPOCH", "1700000000");
    };
    let ok = |args: &[&str]| {
        let mut c = s.cmd();
        epoch(&mut c);
        let out = c.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let rootfs = s.path().join("rootfs");
    berth_test_support::busybox_rootfs(&rootfs);
    ok(&["import", rootfs.to_str().unwrap(), "busybox"]);
    // A build with a few steps and some megabytes, so kills land in RUN, in COPY and in the
    // layer commit.
    let ctx = s.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN head -c 12000000 /dev/zero | tr '\\0' a > /big && sleep 0.05\n\
         COPY data /data\nRUN cat /data/* | wc -c > /count && rm /big\nRUN sync\n",
    )
    .unwrap();
    std::fs::create_dir_all(ctx.join("data")).unwrap();
    for i in 0..8 {
        std::fs::write(
            ctx.join(format!("data/f{i}")),
            berth_test_support::pseudo_random_bytes(i + 100, 1 << 20),
        )
        .unwrap();
    }
    let build = [
        "build",
        "--no-cache",
        "-q",
        "-t",
        "app:1",
        ctx.to_str().unwrap(),
    ];
    let timed = |args: &[&str]| {
        let started = std::time::Instant::now();
        ok(args);
        (started.elapsed().as_millis() as u64).max(10)
    };
    let build_ms = timed(&build);
    let reference = s.image_id("app:1");
    let remote = format!("{}/crash/app:1", reg.host);
    let push_ms = timed(&["push", "app:1", &remote]);
    let pull_ms = timed(&["pull", &remote]);
    let mut rng = Lcg(0xc4a54);
    let kinds = ["build", "pull", "push", "rmi", "prune"];
    let mut killed_count = 0;
    for trial in 0..trials {
        let kind = kinds[(trial % kinds.len() as u64) as usize];
        // Set up what the command works on.
        let (args, window): (Vec<String>, u64) = match kind {
            "build" => (build.map(str::to_owned).to_vec(), build_ms),
            "pull" => {
                let _ = s.run(&["rmi", &remote]);
                ok(&["system", "prune", "-f"]);
                (vec!["pull".into(), remote.clone()], pull_ms)
            }
            "push" => {
                let dest = format!("{}/crash/push{trial}:1", reg.host);
                (vec!["push".into(), "app:1".into(), dest], push_ms)
            }
            "rmi" => {
                ok(&["tag", "app:1", "victim:1"]);
                ok(&["pull", &remote]);
                (vec!["rmi".into(), "victim:1".into(), remote.clone()], 60)
            }
            _ => {
                ok(&["tag", "app:1", "victim:1"]);
                ok(&["rmi", "app:1"]);
                ok(&["rmi", "victim:1"]);
                (vec!["system".into(), "prune".into(), "-f".into()], 60)
            }
        };
        let mut c = s.cmd();
        epoch(&mut c);
        let mut child = c
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.next() % window));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed_count += 1;
        }
        child.wait().unwrap();
        // Containers die with their runtime (PR_SET_PDEATHSIG); give the kernel a moment.
        let mut left = processes_rooted_under(&s.store());
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            left = processes_rooted_under(&s.store());
        }
        assert!(
            left.is_empty(),
            "trial {trial} ({kind}): processes left: {left:?}"
        );
        s.assert_clean();
        assert_eq!(
            std::fs::read_dir(s.store().join("tmp")).unwrap().count(),
            0,
            "trial {trial} ({kind}): tmp/ not cleaned by the next start"
        );
        assert_eq!(
            mounts_under(&s.store()),
            Vec::<String>::new(),
            "trial {trial} ({kind}): mounts left"
        );
        // The command completes afterwards.
        match kind {
            "build" => {
                ok(&build);
                assert_eq!(
                    s.image_id("app:1"),
                    reference,
                    "trial {trial}: a different image"
                );
            }
            "rmi" => {
                let _ = s.run(&["rmi", "victim:1"]);
                let _ = s.run(&["rmi", &remote]);
            }
            "prune" => {
                ok(&["system", "prune", "-f"]);
                ok(&build);
                assert_eq!(
                    s.image_id("app:1"),
                    reference,
                    "trial {trial}: a different image"
                );
            }
            _ => ok(&args.iter().map(String::as_str).collect::<Vec<_>>()),
        }
        s.assert_clean();
    }
    eprintln!(
        "{trials} trials across build, pull, push, rmi and prune; {killed_count} killed mid-work"
    );
}
