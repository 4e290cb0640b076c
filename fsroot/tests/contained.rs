//! Property test: random trees of directories, files and symlinks (absolute, relative,
//! `..`-climbing, pointing at a sentinel directory beside the root, loops), then random
//! operations on random paths through [`Root`]. Whatever happens inside the root, nothing
//! outside it is ever created, removed or changed, and nothing opened resolves outside it.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_fsroot::{Meta, Resolve, Root};

/// xorshift64*: deterministic, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const NAMES: &[&str] = &["a", "b", "c", "e", "z", "keep", "outside"];

/// Everything under `dir` with its type, size, mode, contents and mtime: any change shows.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let meta = std::fs::symlink_metadata(dir).unwrap();
    out.insert(
        PathBuf::from("."),
        format!("{:o} {} {}", meta.mode(), meta.mtime(), meta.mtime_nsec()),
    );
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let extra = if m.is_dir() {
                stack.push(p.clone());
                String::new()
            } else if m.file_type().is_symlink() {
                std::fs::read_link(&p).unwrap().display().to_string()
            } else {
                String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned()
            };
            out.insert(
                p.strip_prefix(dir).unwrap().to_owned(),
                format!(
                    "{:o} {} {} {} {extra}",
                    m.mode(),
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec()
                ),
            );
        }
    }
    out
}

fn random_path(rng: &mut Rng, outside: &Path) -> String {
    if rng.below(10) == 0 {
        // The sentinel's own absolute path: inside the root it names <root><that path>.
        return format!("{}/{}", outside.display(), rng.pick(NAMES));
    }
    let depth = rng.below(5);
    let mut parts = Vec::new();
    for _ in 0..depth {
        parts.push(match rng.below(8) {
            0 => "..",
            1 => ".",
            _ => rng.pick(NAMES),
        });
    }
    let lead = if rng.below(2) == 0 { "/" } else { "" };
    format!("{lead}{}", parts.join("/"))
}

fn random_target(rng: &mut Rng, base: &Path, outside: &Path) -> String {
    match rng.below(10) {
        0 => outside.display().to_string(),
        1 => format!("{}/keep", outside.display()),
        2 => base.display().to_string(),
        3 => "/".into(),
        4 => "../../../../../../../../..".into(),
        5 => "../outside".into(),
        6 => "../../outside/e".into(),
        7 => rng.pick(NAMES).into(),
        8 => format!("/{}/../../outside", rng.pick(NAMES)),
        _ => format!("{}/{}", rng.pick(NAMES), rng.pick(NAMES)),
    }
}

/// A tree made with plain std calls (the test's own, trusted).
fn make_tree(rng: &mut Rng, root: &Path, base: &Path, outside: &Path) {
    for _ in 0..rng.below(25) {
        let depth = 1 + rng.below(3);
        let path: Vec<&str> = (0..depth).map(|_| rng.pick(NAMES)).collect();
        // Made only where every parent is a real directory (the setup must not follow the
        // links it planted).
        let mut parent = root.to_path_buf();
        let mut ok = true;
        for part in &path[..depth - 1] {
            parent.push(part);
            match std::fs::symlink_metadata(&parent) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => ok = false,
                Err(_) => ok = std::fs::create_dir(&parent).is_ok(),
            }
            if !ok {
                break;
            }
        }
        if !ok {
            continue;
        }
        let p = parent.join(path[depth - 1]);
        let _ = match rng.below(4) {
            0 => std::fs::create_dir(&p),
            1 => std::fs::write(&p, ""),
            _ => std::os::unix::fs::symlink(random_target(rng, base, outside), &p),
        };
    }
}

/// The path of an open descriptor must be inside the root.
fn assert_inside(fd: &impl AsRawFd, root: &Path) {
    let at = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    assert!(
        at.starts_with(root),
        "{} is outside {}",
        at.display(),
        root.display()
    );
}

fn meta() -> Meta {
    Meta {
        mode: 0o644,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        mtime: (1_000_000, 0),
    }
}

fn run_case(seed: u64, resolve: Resolve) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let base = tempfile::tempdir().unwrap();
    let base = base.path().canonicalize().unwrap();
    let root = base.join("root");
    let outside = base.join("outside");
    std::fs::create_dir_all(outside.join("e")).unwrap();
    std::fs::create_dir_all(outside.join("a/b")).unwrap();
    std::fs::write(outside.join("keep"), "host-secret").unwrap();
    std::fs::write(outside.join("z"), "").unwrap();
    std::fs::write(outside.join("a/z"), "").unwrap();
    std::fs::create_dir(&root).unwrap();
    make_tree(&mut rng, &root, &base, &outside);
    let before = snapshot(&outside);
    let r = Root::open_with(&root, resolve).unwrap();
    for _ in 0..40 {
        let path = random_path(&mut rng, &outside);
        match rng.below(11) {
            0 => {
                if let Ok(fd) = r.mkdir_all(
                    &path,
                    Some(Meta {
                        mode: 0o755,
                        ..meta()
                    }),
                ) {
                    assert_inside(&fd, &root);
                }
            }
            1 => {
                if let Ok((dir, name)) = r.parent(&path, None) {
                    assert_inside(&dir, &root);
                    let _ = berth_fsroot::write_file(&dir, name, &mut &b"written"[..], meta());
                }
            }
            2 => {
                if let Ok((dir, name)) = r.parent(&path, None) {
                    let target = random_target(&mut rng, &base, &outside);
                    let _ = berth_fsroot::write_symlink(&dir, name, target.as_bytes(), meta());
                }
            }
            3 => {
                if let Ok((dir, name)) = r.parent(&path, None)
                    && let Ok(fd) = berth_fsroot::write_dir(&dir, name, Some(meta()))
                {
                    assert_inside(&fd, &root);
                }
            }
            4 => {
                if let Ok((dir, name)) = r.parent(&path, None) {
                    let _ = berth_fsroot::write_fifo(&dir, name, meta());
                }
            }
            5 => {
                let _ = r.remove_empty(&path);
            }
            6 => {
                if let Ok(f) = r.open_file(&path) {
                    assert_inside(&f, &root);
                }
                if let Ok(f) = r.open_file_following(&path) {
                    assert_inside(&f, &root);
                }
            }
            7 => {
                if let Ok(c) = r.canonical(&path) {
                    assert!(
                        !c.starts_with('/') && !c.split('/').any(|p| p == ".."),
                        "{c}"
                    );
                }
            }
            8 => {
                if let Ok(fd) = r.open_dir(&path) {
                    assert_inside(&fd, &root);
                }
                let _ = r.list(&path);
            }
            9 => {
                let _ = r.lstat(&path);
                let _ = r.stat(&path);
                let _ = r.read_link(&path);
            }
            _ => {
                if let Ok(Some((dir, _))) = r.parent_of(&path) {
                    assert_inside(&dir, &root);
                }
            }
        }
    }
    assert_eq!(
        snapshot(&outside),
        before,
        "seed {seed} ({resolve:?}) changed the sentinel"
    );
    let names: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        names,
        ["outside", "root"],
        "seed {seed}: something beside the root"
    );
}

#[test]
fn nothing_outside_the_root_is_touched_in_root_mode() {
    for seed in 0..200 {
        run_case(seed, Resolve::InRoot);
    }
}

#[test]
fn nothing_outside_the_root_is_touched_without_symlinks() {
    for seed in 0..200 {
        run_case(seed, Resolve::NoSymlinks);
    }
}
