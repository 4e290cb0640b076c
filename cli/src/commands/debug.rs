//! `berth debug dockerfile [-f FILE]`: the parsed Dockerfile as BuildKit's s-expression dump
//! (what BuildKit's parser tests compare), after the full typed check, so every syntax or
//! semantic error shows here as it would in a build: `Dockerfile:LINE`, the lines around it
//! with a caret, exit code 2. Warnings go to stderr.

use std::path::PathBuf;

use crate::UsageError;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Parse a Dockerfile and print its AST
    Dockerfile {
        /// The Dockerfile (`-` for stdin)
        #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
        file: PathBuf,
        /// A build arg (KEY=VALUE), as `build` takes it: checked for use
        #[arg(long = "build-arg")]
        build_args: Vec<String>,
        /// The stage to build: the stages it needs are listed on stderr
        #[arg(long)]
        target: Option<String>,
    },
    /// List what a build would take from a context (after .dockerignore), with digests
    Context {
        /// The Dockerfile whose `<name>.dockerignore` applies, if any
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Print only the counts and the context digest
        #[arg(short, long)]
        quiet: bool,
        /// The context directory, or `-` for a tar (plain, gzip, zstd, bzip2, xz) on stdin
        context: PathBuf,
    },
}

pub fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Dockerfile {
            file,
            build_args,
            target,
        } => dockerfile(file, &build_args, target.as_deref()),
        Command::Context {
            file,
            quiet,
            context,
        } => context_list(file, quiet, context),
    }
}

fn context_list(file: Option<PathBuf>, quiet: bool, context: PathBuf) -> anyhow::Result<u8> {
    use berth_builder::context::{EntryKind, StatIndex, digest_selection, load_matcher, scan};
    let _unpacked;
    let root = if context.as_os_str() == "-" {
        let dir = tempfile::tempdir()?;
        let limits = berth_builder::context::archive::Limits::from_env();
        let received = berth_builder::context::archive::receive(
            std::io::stdin().lock(),
            dir.path(),
            &limits,
            "stdin",
        )?;
        if received != berth_builder::context::archive::Received::Context {
            return Err(UsageError("stdin is not a tar archive".into()).into());
        }
        let path = dir.path().to_owned();
        _unpacked = dir;
        path
    } else {
        if !context.is_dir() {
            return Err(
                UsageError(format!("context {} is not a directory", context.display())).into(),
            );
        }
        context
    };
    let matcher = load_matcher(&root, file.as_deref())?;
    let scanned = scan(&root, &matcher, &mut StatIndex::default())?;
    if !quiet {
        for e in scanned.entries.values() {
            let what = match (&e.kind, &e.digest) {
                (EntryKind::Symlink(t), _) => format!("-> {t}"),
                (_, Some(d)) => d.to_string(),
                (EntryKind::Dir, _) => "dir".into(),
                _ => "other".into(),
            };
            outln!("{:o} {}:{} {} {}", e.mode, e.uid, e.gid, e.path, what);
        }
    }
    outln!(
        "{} entries, {} files, context digest {}",
        scanned.entries.len(),
        scanned.stats.files,
        digest_selection(scanned.entries.values(), None)
    );
    Ok(0)
}

fn dockerfile(file: PathBuf, build_args: &[String], target: Option<&str>) -> anyhow::Result<u8> {
    use berth_builder::instructions::stages;
    let (text, name) = if file.as_os_str() == "-" {
        (
            std::io::read_to_string(std::io::stdin())?,
            "Dockerfile".to_owned(),
        )
    } else {
        let text = std::fs::read(&file)
            .map_err(|e| UsageError(format!("reading {}: {e}", file.display())))?;
        (
            String::from_utf8_lossy(&text).into_owned(),
            file.file_name()
                .map_or("Dockerfile".into(), |n| n.to_string_lossy().into_owned()),
        )
    };
    let show = |e: berth_builder::dockerfile::ParseError| {
        UsageError(e.render(&text, &name).trim_end().to_owned())
    };
    let parsed = berth_builder::dockerfile::parse(&text).map_err(show)?;
    let typed = berth_builder::instructions::parse_dockerfile(&text).map_err(show)?;
    let mut args = std::collections::HashMap::new();
    for kv in build_args {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--build-arg {kv:?}: expected KEY=VALUE")))?;
        args.insert(k.to_owned(), v.to_owned());
    }
    // The stage checks a build makes before it starts: FROM expansion, references, cycles,
    // the target, and build args nothing declares.
    let global =
        stages::global_scope(&typed, &args, &stages::Platforms::default()).map_err(show)?;
    let deps = stages::dependencies(&typed, &args, &global).map_err(show)?;
    let needed = stages::target_stages(&typed, target, &deps).map_err(show)?;
    let mut warnings = typed.warnings.clone();
    warnings.extend(stages::unused_build_args_warning(
        &stages::unused_build_args(&typed, &needed, &args),
    ));
    for w in &warnings {
        match w.line {
            0 => errln!("WARNING: {}", w.message),
            line => errln!("WARNING: {name}:{line}: {}", w.message),
        }
    }
    let names: Vec<String> = needed
        .iter()
        .map(|&i| typed.stages[i].display_name())
        .collect();
    errln!("stages to build: {}", names.join(", "));
    outln!("{}", parsed.ast.dump());
    Ok(0)
}
