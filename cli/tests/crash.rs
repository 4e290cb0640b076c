//! kill -9 in the middle of `import` and `load`: the store stays clean, nothing is left in
//! `tmp/` after the next start, and the next command works. `BERTH_CRASH_TRIALS` sets the
//! number of trials (default 20; the reliability suite runs 200).

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
