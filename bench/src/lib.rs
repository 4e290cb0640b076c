//! Benchmarks (run by hand, never in `cargo test`): each binary prints its figures and, where a
//! peer tool applies, the ratio against it measured in the same run. See README.md.
//! Finding the peers and running a `dockerd` of our own for BuildKit are shared with the
//! tests ([`berth_test_support::dockerd`]). The helpers here are shared by the binaries:
//! measuring a command, medians, and the W2 app's context.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use berth_test_support::dockerd::{Dockerd, which};

/// The middle value (the upper one of the two middles for an even count).
pub fn median<T: Ord + Copy>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

/// What one command measured by [`measure`] did.
#[derive(Debug)]
pub struct Measured {
    /// Wall time from spawn to exit.
    pub time: Duration,
    /// The child's maximum resident set, in KiB.
    pub max_rss_kib: u64,
    /// Its stdout, then its stderr.
    pub output: String,
}

/// Runs a command to its end and measures it. The child is reaped by `wait4` (for its
/// rusage), not by `Child::wait`. A failure (a non-zero exit or a signal) is an `Err` with
/// the command and its output.
#[allow(clippy::zombie_processes)]
pub fn measure(c: &mut Command) -> Result<Measured, String> {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = c.spawn().map_err(|e| format!("{c:?}: {e}"))?;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let mut status = 0;
    // SAFETY: a plain rusage struct for wait4 to fill, for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for the child we spawned; pointers are to live locals.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let time = t.elapsed();
    let output = out.join().unwrap_or_default() + &err.join().unwrap_or_default();
    if pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(Measured {
            time,
            max_rss_kib: usage.ru_maxrss as u64,
            output,
        })
    } else {
        Err(format!("{c:?} failed:\n{output}"))
    }
}

/// Writes a file, creating its directory.
pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Writes the W2 app under `dir`: a Dockerfile from `base` (a manifest COPY, a RUN, `COPY .
/// .`, a RUN), `manifest.txt`, and 5,000 files of 40 KiB of xorshift bytes (200 MB that do
/// not compress) in 50 directories, `src/d{i % 50}/f{i}.bin`. The same bytes on every call.
/// Returns the source file the "one file changed" phases edit.
pub fn w2_app(dir: &Path, base: &str) -> PathBuf {
    write(
        &dir.join("Dockerfile"),
        format!(
            "FROM {base}
WORKDIR /app
COPY manifest.txt ./
RUN cat manifest.txt | wc -l > /deps-installed
COPY . .
RUN du -s /app > /app-size
"
        )
        .as_bytes(),
    );
    write(&dir.join("manifest.txt"), b"dep-a\ndep-b\n");
    let mut seed = 1u64;
    for i in 0..5000 {
        let len = 40 * 1024;
        let mut bytes = Vec::with_capacity(len);
        while bytes.len() < len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.extend_from_slice(&seed.to_le_bytes());
        }
        write(&dir.join(format!("src/d{}/f{i}.bin", i % 50)), &bytes);
    }
    dir.join("src/d7/f7.bin")
}
