//! `RUN --mount=...`: parsing BuildKit's mount specs and preparing each for the container.
//!
//! - `type=cache` (`id` defaults to the target; `sharing=shared|private|locked`; `mode`,
//!   `uid`, `gid` for a new cache): a directory kept in the store (`cache-mounts/`) between
//!   builds, never part of a layer or of the cache key;
//! - `type=bind` (the default; `source`, `from=stage|image`, read-only unless `rw`): from the
//!   context, the source is resolved inside the context (a symlink out of it resolves back
//!   in); from a stage or an image, the source is first copied out of that tree, so the
//!   container never sees more than the source, and `rw` writes are thrown away;
//! - `type=tmpfs` (`size`): an empty tmpfs;
//! - `type=secret` (`id`, `target` default `/run/secrets/<id>`, `required`, `mode`, `uid`,
//!   `gid`): the secret given with `--secret id=...,src=FILE|env=VAR`, written for the step
//!   only into a [`SecretDir`] (a directory on `/dev/shm`, memory, never the disk, that no
//!   other user can enter) and bind-mounted read-only. `mode` is what the step sees; on the
//!   host the file is out of every other user's reach whatever its mode. The secret's value
//!   never enters the cache key, the history, a layer or the logs.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Where a `--secret` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    File(PathBuf),
    Env(String),
}

impl Secret {
    /// `id=ID,src=PATH` | `id=ID,env=VAR` | `id=ID` (the env var `ID`, as BuildKit).
    pub fn parse(spec: &str) -> Result<(String, Secret), String> {
        let mut id = None;
        let mut source = None;
        for part in spec.split(',') {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!("--secret {spec:?}: expected id=ID,src=PATH or id=ID,env=VAR")
            })?;
            match k {
                "id" => id = Some(v.to_owned()),
                "src" | "source" => source = Some(Secret::File(PathBuf::from(v))),
                "env" => source = Some(Secret::Env(v.to_owned())),
                "type" if v == "file" || v == "env" => {}
                _ => return Err(format!("--secret {spec:?}: unknown key {k:?}")),
            }
        }
        let id = id.ok_or_else(|| format!("--secret {spec:?}: the id is missing"))?;
        let source = source.unwrap_or_else(|| Secret::Env(id.clone()));
        Ok((id, source))
    }

    /// The value; `None` when the file or variable does not exist.
    pub fn read(&self) -> Result<Option<Vec<u8>>, String> {
        match self {
            Secret::File(p) => match std::fs::read(p) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("reading secret file {}: {e}", p.display())),
            },
            Secret::Env(v) => Ok(std::env::var_os(v).map(|s| s.into_encoded_bytes())),
        }
    }
}

/// A directory for a step's secret files that only berth's user can enter: `mode 0700`,
/// made by `mkdir` under a fresh random name (an existing name, which another user may have
/// made first, is never used), then checked through the descriptor it was opened with (a
/// directory, not a link, owned by this user, 0700). Files are created inside it relative to
/// that descriptor, exclusively, never following a link. Removed with its files on drop.
#[derive(Debug)]
pub struct SecretDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl SecretDir {
    /// On `/dev/shm` (a tmpfs) when there is one, else under `fallback`.
    pub fn create(fallback: &Path) -> std::io::Result<SecretDir> {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm } else { fallback };
        let mut tries = 0;
        loop {
            let mut random = [0u8; 16];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut random)?;
            let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
            let path = base.join(format!("berth-secrets-{name}"));
            match rustix::fs::mkdir(&path, rustix::fs::Mode::from_raw_mode(0o700)) {
                Ok(()) => return SecretDir::open(path),
                Err(rustix::io::Errno::EXIST) if tries < 16 => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn open(path: PathBuf) -> std::io::Result<SecretDir> {
        use rustix::fs::{FileType, Mode, OFlags};
        let refuse = |path: &Path| {
            let _ = std::fs::remove_dir(path);
            std::io::Error::other(format!(
                "{}: not a private directory of this user",
                path.display()
            ))
        };
        let fd = match rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(_) => return Err(refuse(&path)),
        };
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory
            || st.st_uid != rustix::process::geteuid().as_raw()
        {
            return Err(refuse(&path));
        }
        // mkdir's mode went through the umask, which can only have taken bits away.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
        Ok(SecretDir { path, fd })
    }

    /// Writes `value` to a new file `name` in the directory, owned by `uid:gid` with `mode`;
    /// returns its path, for the bind mount.
    pub fn write(
        &self,
        name: &str,
        value: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> std::io::Result<PathBuf> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::openat(
            self.fd.as_fd(),
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut file = std::fs::File::from(fd);
        std::io::Write::write_all(&mut file, value)?;
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode & 0o7777))?;
        Ok(self.path.join(name))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bind,
    Cache,
    Tmpfs,
    Secret,
}

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: Kind,
    pub target: String,
    pub source: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub sharing: berth_store::CacheSharing,
    pub readonly: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub required: bool,
    pub size: Option<u64>,
}

fn size(v: &str) -> Result<u64, String> {
    let lower = v.to_ascii_lowercase();
    let end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let n: u64 = lower[..end]
        .parse()
        .map_err(|_| format!("invalid size {v:?}"))?;
    let shift = match lower[end..].trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        u => return Err(format!("invalid size {v:?}: unknown unit {u:?}")),
    };
    Ok(n << shift)
}

impl MountSpec {
    pub fn parse(spec: &str) -> Result<MountSpec, String> {
        let mut fields: BTreeMap<String, Option<String>> = BTreeMap::new();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = match part.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_owned())),
                None => (part.to_ascii_lowercase(), None),
            };
            fields.insert(k, v);
        }
        let get = |names: &[&str]| names.iter().find_map(|n| fields.get(*n).cloned().flatten());
        let flag = |name: &str| match fields.get(name) {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(v)) => match v.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(format!(
                    "--mount {spec:?}: {name}={v}: expected true or false"
                )),
            },
        };
        let kind = match get(&["type"]).as_deref().unwrap_or("bind") {
            "bind" => Kind::Bind,
            "cache" => Kind::Cache,
            "tmpfs" => Kind::Tmpfs,
            "secret" => Kind::Secret,
            "ssh" => return Err("RUN --mount=type=ssh is not supported yet".into()),
            t => return Err(format!("--mount {spec:?}: unknown type {t:?}")),
        };
        for k in fields.keys() {
            let known = [
                "type",
                "target",
                "dst",
                "destination",
                "source",
                "src",
                "from",
                "id",
                "sharing",
                "readonly",
                "ro",
                "rw",
                "readwrite",
                "mode",
                "uid",
                "gid",
                "required",
                "size",
            ];
            if !known.contains(&k.as_str()) {
                return Err(format!("--mount {spec:?}: unknown option {k:?}"));
            }
        }
        let id = get(&["id"]);
        let target = match (get(&["target", "dst", "destination"]), kind, &id) {
            (Some(t), _, _) => t,
            (None, Kind::Secret, Some(id)) => format!("/run/secrets/{id}"),
            _ => return Err(format!("--mount {spec:?}: the target is missing")),
        };
        let octal = |name: &str| {
            get(&[name])
                .map(|v| {
                    u32::from_str_radix(&v, 8)
                        .map_err(|_| format!("--mount {spec:?}: invalid {name} {v:?}"))
                })
                .transpose()
        };
        let number = |name: &str| {
            get(&[name])
                .map(|v| {
                    v.parse::<u32>()
                        .map_err(|_| format!("--mount {spec:?}: invalid {name} {v:?}"))
                })
                .transpose()
        };
        let rw = flag("rw")? || flag("readwrite")?;
        let ro = flag("readonly")? || flag("ro")?;
        Ok(MountSpec {
            kind,
            id: id.clone().or_else(|| match kind {
                Kind::Cache => Some(target.clone()),
                Kind::Secret => target.rsplit('/').next().map(str::to_owned),
                _ => None,
            }),
            target,
            source: get(&["source", "src"]),
            from: get(&["from"]),
            sharing: match get(&["sharing"]).as_deref().unwrap_or("shared") {
                "shared" => berth_store::CacheSharing::Shared,
                "private" => berth_store::CacheSharing::Private,
                "locked" => berth_store::CacheSharing::Locked,
                s => return Err(format!("--mount {spec:?}: unknown sharing {s:?}")),
            },
            readonly: match kind {
                Kind::Bind => !rw,
                Kind::Secret => true,
                _ => ro,
            },
            mode: octal("mode")?,
            uid: number("uid")?,
            gid: number("gid")?,
            required: flag("required")?,
            size: get(&["size"]).map(|v| size(&v)).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_specs_parse_with_buildkit_defaults() {
        let c = MountSpec::parse("type=cache,target=/root/.cache").unwrap();
        assert_eq!(c.kind, Kind::Cache);
        assert_eq!(c.id.as_deref(), Some("/root/.cache"));
        assert!(!c.readonly);
        let b = MountSpec::parse("target=/src,source=go.mod").unwrap();
        assert_eq!(b.kind, Kind::Bind);
        assert!(b.readonly);
        assert!(!MountSpec::parse("target=/src,rw").unwrap().readonly);
        let s = MountSpec::parse("type=secret,id=token,required").unwrap();
        assert_eq!(s.target, "/run/secrets/token");
        assert!(s.required);
        let t = MountSpec::parse("type=tmpfs,target=/t,size=64m").unwrap();
        assert_eq!(t.size, Some(64 << 20));
        let l = MountSpec::parse("type=cache,target=/c,sharing=locked,mode=0700,uid=5").unwrap();
        assert_eq!(l.sharing, berth_store::CacheSharing::Locked);
        assert_eq!((l.mode, l.uid), (Some(0o700), Some(5)));
        assert!(MountSpec::parse("type=bind").is_err());
        assert!(MountSpec::parse("type=cache,target=/c,bogus=1").is_err());
        assert!(MountSpec::parse("type=nope,target=/c").is_err());
    }

    #[test]
    fn a_secret_dir_is_private_and_goes_with_its_files() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = SecretDir::create(tmp.path()).unwrap();
        let path = dir.path().to_owned();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o7777, 0o700);
        let me = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let file = dir.write("s", b"value", 0o444, me, gid).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"value");
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o7777, 0o444);
        assert!(
            dir.write("s", b"again", 0o400, me, gid).is_err(),
            "never over an existing file"
        );
        std::os::unix::fs::symlink("/etc/passwd", path.join("l")).unwrap();
        assert!(
            dir.write("l", b"x", 0o400, me, gid).is_err(),
            "never through a link"
        );
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn secrets_parse() {
        assert_eq!(
            Secret::parse("id=a,src=/x").unwrap(),
            ("a".into(), Secret::File("/x".into()))
        );
        assert_eq!(
            Secret::parse("id=a,env=V").unwrap(),
            ("a".into(), Secret::Env("V".into()))
        );
        assert_eq!(
            Secret::parse("id=a").unwrap(),
            ("a".into(), Secret::Env("a".into()))
        );
        assert!(Secret::parse("src=/x").is_err());
    }
}
