//! Context digesting: a generated 5,000-file / 200 MB context digested cold, then again
//! unchanged (the stat index must make the second run read no file contents), then after a
//! `touch` of one file. `cargo run --release -p berth-bench --bin context [DIR]`.
//!
//! The cold run drops nothing from the page cache (that needs root and disturbs other work);
//! it measures hashing 200 MB from memory, which is the fair comparison for the warm run.

use std::time::{Duration, Instant};

use berth_builder::context::{Matcher, StatIndex, scan};

const FILES: usize = 5_000;
const TOTAL_BYTES: usize = 200 << 20;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("berth-bench-context"));
    let marker = dir.with_extension("done");
    if !marker.exists() {
        let per_file = TOTAL_BYTES / FILES;
        for i in 0..FILES {
            let sub = dir.join(format!("d{:02}/e{:02}", i % 50, (i / 50) % 10));
            std::fs::create_dir_all(&sub).unwrap();
            let data = berth_test_support::pseudo_random_bytes(i as u64 + 1, per_file);
            std::fs::write(sub.join(format!("f{i}.bin")), data).unwrap();
        }
        std::fs::write(&marker, "").unwrap();
    }
    let matcher = Matcher::default();
    let runs = 5;
    let (mut cold, mut warm, mut touched) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cold_read, mut warm_read, mut touch_read) = (0, 0, 0);
    for _ in 0..runs {
        let mut index = StatIndex::default();
        let t = Instant::now();
        let s = scan(&dir, &matcher, &mut index).unwrap();
        cold.push(t.elapsed());
        cold_read = s.stats.files_read;
        let t = Instant::now();
        let s = scan(&dir, &matcher, &mut index).unwrap();
        warm.push(t.elapsed());
        warm_read = s.stats.files_read;
        let f = std::fs::File::options()
            .append(true)
            .open(dir.join("d00/e00/f0.bin"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
        let t = Instant::now();
        let s = scan(&dir, &matcher, &mut index).unwrap();
        touched.push(t.elapsed());
        touch_read = s.stats.files_read;
    }
    let (c, w, t) = (median(cold), median(warm), median(touched));
    println!(
        "context: {FILES} files, {} MiB, {runs} runs, medians",
        TOTAL_BYTES >> 20
    );
    println!(
        "cold      {:>9.1} ms   files read {cold_read}",
        c.as_secs_f64() * 1e3
    );
    println!(
        "unchanged {:>9.1} ms   files read {warm_read}   ratio to cold {:.3}",
        w.as_secs_f64() * 1e3,
        w.as_secs_f64() / c.as_secs_f64()
    );
    println!(
        "touch 1   {:>9.1} ms   files read {touch_read}",
        t.as_secs_f64() * 1e3
    );
    let ok = warm_read == 0 && w.as_secs_f64() < c.as_secs_f64() / 10.0;
    println!(
        "goal (unchanged reads nothing, < 0.1x cold): {}",
        if ok { "met" } else { "NOT met" }
    );
}
