//! `berth cp [-a] [-L] CONTAINER:SRC DEST|-` and `berth cp [-a] [-L] SRC|- CONTAINER:DEST`, as
//! Docker's: a file or a tree copied out of or into a container, running or stopped; `-` is a
//! tar stream on stdout or stdin. `SRC/.` copies a directory's contents.
//!
//! Every path in the container is resolved inside its root (`crate::container_fs`): a
//! symlink the container planted (`/evil -> /`, `x -> ../../../etc`, a link into
//! `/proc/1/root`) is followed as if the container's root were `/`, and a name written is
//! never followed at its last component. What is copied in is owned by the container's root
//! (with `-a`, by the source's owners); what is copied out is owned by the user running berth
//! and loses setuid and setgid bits (with `-a`, the container's owners and modes, as root).

use std::path::Path;

use berth_fsroot::Root;
use berth_store::Store;

use crate::UsageError;
use crate::container_fs::{
    Access, TarOptions, base_name, builder, parent_path, unpack_into, with_root, write_tree,
};
use crate::containers::find;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Keep owners (and, copying out, setuid and setgid bits)
    #[arg(short = 'a', long = "archive")]
    archive: bool,
    /// Follow a symlink at SRC
    #[arg(short = 'L', long = "follow-link")]
    follow: bool,
    /// CONTAINER:PATH, a host path, or - (a tar stream on stdin)
    src: String,
    /// CONTAINER:PATH, a host path, or - (a tar stream on stdout)
    dest: String,
}

enum Place<'a> {
    Stream,
    Host(&'a str),
    Container(&'a str, &'a str),
}

/// Docker's reading: `-`, a path (starting with `/` or `.`, or without a `:`), or
/// `CONTAINER:PATH`.
fn place(arg: &str) -> Place<'_> {
    if arg == "-" {
        return Place::Stream;
    }
    if arg.starts_with('/') || arg.starts_with('.') {
        return Place::Host(arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() && !c.contains('/') => {
            Place::Container(c, if p.is_empty() { "/" } else { p })
        }
        _ => Place::Host(arg),
    }
}

/// `SRC/.`: the directory's contents, and the directory itself.
fn contents_of(path: &str) -> (bool, &str) {
    match path.strip_suffix("/.") {
        Some("") => (true, "/"),
        Some(dir) => (true, dir),
        None => (false, path),
    }
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    match (place(&args.src), place(&args.dest)) {
        (Place::Container(c, src), dest @ (Place::Host(_) | Place::Stream)) => {
            copy_out(store, &args, c, src, dest)
        }
        (src @ (Place::Host(_) | Place::Stream), Place::Container(c, dest)) => {
            copy_in(store, &args, src, c, dest)
        }
        (Place::Container(..), Place::Container(..)) => {
            Err(UsageError("copying between containers is not supported".into()).into())
        }
        _ => Err(UsageError("one of SRC and DEST must be CONTAINER:PATH".into()).into()),
    }
}

/// Streams `write` (a tar writer) into `unpack` through a pipe, on two threads.
fn through_pipe(
    write: impl FnOnce(std::io::PipeWriter) -> anyhow::Result<()> + Send,
    unpack: impl FnOnce(std::io::PipeReader) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (reader, writer) = std::io::pipe()?;
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || write(writer));
        let unpacked = unpack(reader);
        let written = producer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        // The producer's error is the cause when both failed (the unpacker saw a short tar).
        written.and(unpacked)
    })
}

fn copy_out(
    store: &Store,
    args: &Args,
    container: &str,
    src: &str,
    dest: Place<'_>,
) -> anyhow::Result<u8> {
    let record = find(store, container)?;
    let (contents, src) = contents_of(src);
    let owner = (!args.archive).then(|| {
        (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )
    });
    let opts = TarOptions {
        owner,
        strip_setid: !args.archive,
        follow_top: args.follow,
    };
    with_root(store, &record, Access::Read, |root: &Root| {
        let stat = if args.follow {
            root.stat(src)
        } else {
            root.lstat(src)
        }
        .map_err(|e| anyhow::anyhow!("{src} in container {container}: {e}"))?;
        let is_dir = rustix::fs::FileType::from_raw_mode(stat.st_mode).is_dir();
        if contents && !is_dir {
            return Err(anyhow::anyhow!(
                "{src} in container {container} is not a directory"
            ));
        }
        let name = if contents { "" } else { base_name(src) };
        let dest = match dest {
            Place::Host(d) => d,
            _ => {
                let mut out = builder(std::io::BufWriter::new(crate::stdio::Stdout));
                write_tree(root, src, name, &opts, &mut out)?;
                std::io::Write::flush(&mut out.into_inner()?)?;
                return Ok(());
            }
        };
        let (dir, name) = match std::fs::metadata(dest) {
            Ok(m) if m.is_dir() => (dest.to_owned(), name.to_owned()),
            Ok(_) if is_dir => {
                return Err(
                    UsageError(format!("cannot copy directory {src} onto file {dest}")).into(),
                );
            }
            Ok(_) => (parent_path(dest), base_name(dest).to_owned()),
            Err(_) => {
                let parent = parent_path(dest);
                if !Path::new(&parent).is_dir() {
                    return Err(anyhow::anyhow!("{parent} is not a directory"));
                }
                if contents {
                    std::fs::create_dir(dest)?;
                    (dest.to_owned(), String::new())
                } else {
                    (parent, base_name(dest).to_owned())
                }
            }
        };
        let dir_fd = rustix::fs::open(
            dir.as_str(),
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        through_pipe(
            |w| {
                let mut out = builder(w);
                write_tree(root, src, &name, &opts, &mut out)?;
                out.into_inner()?;
                Ok(())
            },
            |r| unpack_into(r, &dir_fd),
        )
    })?;
    Ok(0)
}

fn copy_in(
    store: &Store,
    args: &Args,
    src: Place<'_>,
    container: &str,
    dest: &str,
) -> anyhow::Result<u8> {
    let record = find(store, container)?;
    let missing = |e: std::io::Error| anyhow::anyhow!("{dest} in container {container}: {e}");
    with_root(store, &record, Access::Write, |root: &Root| {
        let found = root.stat(dest);
        let Place::Host(src) = src else {
            // A tar stream: extracted into the directory DEST.
            if !found
                .as_ref()
                .is_ok_and(|s| rustix::fs::FileType::from_raw_mode(s.st_mode).is_dir())
            {
                return Err(anyhow::anyhow!(
                    "{dest} in container {container} is not a directory"
                ));
            }
            let dir = root.open_dir(&root.canonical(dest).map_err(missing)?)?;
            return unpack_into(std::io::stdin().lock(), &dir);
        };
        let (contents, src) = contents_of(src);
        let host_src = std::path::absolute(src)?;
        let host_src = host_src
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("{src}: not a UTF-8 path"))?;
        let src_meta = if args.follow {
            std::fs::metadata(host_src)
        } else {
            std::fs::symlink_metadata(host_src)
        }
        .map_err(|e| anyhow::anyhow!("{src}: {e}"))?;
        if contents && !src_meta.is_dir() {
            return Err(anyhow::anyhow!("{src} is not a directory"));
        }
        let (dir, name) = match found {
            Ok(s) if rustix::fs::FileType::from_raw_mode(s.st_mode).is_dir() => (
                root.canonical(dest).map_err(missing)?,
                if contents {
                    String::new()
                } else {
                    base_name(src).to_owned()
                },
            ),
            Ok(_) if src_meta.is_dir() => {
                return Err(UsageError(format!(
                    "cannot copy directory {src} onto file {dest} in container {container}"
                ))
                .into());
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(missing(e)),
            _ => {
                let parent = root.canonical(&parent_path(dest)).map_err(|e| {
                    anyhow::anyhow!("{} in container {container}: {e}", parent_path(dest))
                })?;
                (parent, base_name(dest).to_owned())
            }
        };
        if name.is_empty() && !contents {
            return Err(UsageError(format!("cannot copy {src} onto the container's /")).into());
        }
        let dir_fd = root.open_dir(&dir).map_err(missing)?;
        let host = Root::open(Path::new("/"))?;
        let opts = TarOptions {
            owner: (!args.archive).then_some((0, 0)),
            strip_setid: false,
            follow_top: args.follow,
        };
        through_pipe(
            |w| {
                let mut out = builder(w);
                write_tree(&host, host_src, &name, &opts, &mut out)?;
                out.into_inner()?;
                Ok(())
            },
            |r| unpack_into(r, &dir_fd),
        )
    })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_read_as_docker_reads_them() {
        assert!(matches!(place("-"), Place::Stream));
        assert!(matches!(place("c1:/etc"), Place::Container("c1", "/etc")));
        assert!(matches!(place("c1:"), Place::Container("c1", "/")));
        assert!(matches!(place("./a:b"), Place::Host("./a:b")));
        assert!(matches!(place("/a:b"), Place::Host("/a:b")));
        assert!(matches!(place("file"), Place::Host("file")));
        assert_eq!(contents_of("/d/."), (true, "/d"));
        assert_eq!(contents_of("/."), (true, "/"));
        assert_eq!(contents_of("/d"), (false, "/d"));
    }
}
