//! `berth build [OPTIONS] CONTEXT`: the flags parsed and wired to one call of
//! [`berth_builder::build`], with the store, the base-image resolver that pulls
//! ([`crate::resolver`]), downloads for `ADD` ([`crate::download`]), the progress view
//! ([`crate::progress`]) and the outputs ([`crate::exporters`]).
//!
//! RUN steps get the host's network by default (`--network default` is `host`: berth has no
//! bridge network, and builds expect to reach package mirrors); `--network none` isolates
//! them. A Dockerfile cannot widen that: `RUN --network=host` needs `--allow network.host`,
//! `RUN --security=insecure` needs `--allow security.insecure`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use berth_builder::{BuildError, BuildRequest, DockerfileSource, Services};
use berth_oci::Reference;
use berth_store::Store;

use crate::UsageError;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Name and optionally tag the image (name:tag); may be repeated
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from stdin)
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Set a build-time variable (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Build this stage (and what it needs) instead of the last one
    #[arg(long)]
    target: Option<String>,
    /// Do not use the cache
    #[arg(long)]
    no_cache: bool,
    /// Do not use the cache for these stages
    #[arg(long)]
    no_cache_filter: Vec<String>,
    /// Target platform (os/arch[/variant]) for FROM resolution and TARGETPLATFORM
    #[arg(long)]
    platform: Option<String>,
    /// Output: auto, plain, tty or quiet
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "tty", "quiet"])]
    progress: String,
    /// Print only the image ID (same as --progress=quiet)
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Write the image ID to this file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Set a label on the image (KEY=VALUE)
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Network for RUN steps: default (the host's), none or host
    #[arg(long, default_value = "default", value_parser = ["default", "none", "host"])]
    network: String,
    /// Grant an entitlement to the Dockerfile: network.host (RUN --network=host),
    /// security.insecure (RUN --security=insecure); may be repeated or comma-separated
    #[arg(long = "allow", value_delimiter = ',')]
    allow: Vec<berth_builder::exec::policy::Entitlement>,
    /// A resource limit for RUN steps, NAME=SOFT[:HARD] (as `run --ulimit`)
    #[arg(long = "ulimit", value_parser = berth_runtime::spec::Rlimit::parse)]
    ulimits: Vec<berth_runtime::spec::Rlimit>,
    /// Set every time in the image to this Unix time (as SOURCE_DATE_EPOCH)
    #[arg(long)]
    timestamp: Option<u64>,
    /// Keep the full output of every RUN step in this file
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// A secret for `RUN --mount=type=secret` (id=ID,src=FILE or id=ID,env=VAR); never stored
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// Also write the result: type=oci,dest=FILE | type=docker,dest=FILE | type=local,dest=DIR
    /// (a bare path is type=local)
    #[arg(short = 'o', long)]
    output: Vec<String>,
    /// Layer compression for --output type=oci and --push: gzip, zstd or none
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd", "none"])]
    compression: String,
    /// Check the registry for a newer version of every FROM image
    #[arg(long)]
    pull: bool,
    /// Push every -t name to its registry when the build is done
    #[arg(long)]
    push: bool,
    #[command(flatten)]
    tls: crate::wiring::TlsArgs,
    /// The build context directory
    context: PathBuf,
}

fn key_values(list: &[String], what: &str) -> anyhow::Result<Vec<(String, Option<String>)>> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), Some(v.to_owned()))),
            None if !kv.is_empty() => Ok((kv.clone(), None)),
            _ => Err(UsageError(format!("{what} {kv:?}: expected KEY=VALUE")).into()),
        })
        .collect()
}

pub fn run(store: Arc<Store>, args: Args) -> anyhow::Result<u8> {
    let started = Instant::now();
    if !args.context.is_dir() {
        let shown = args.context.display();
        return Err(UsageError(format!("context {shown} is not a directory")).into());
    }
    let quiet = args.quiet || args.progress == "quiet";
    let tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    if args.push && tags.is_empty() {
        return Err(UsageError("--push needs a name: -t REGISTRY/NAME:TAG".into()).into());
    }
    let dockerfile = match &args.file {
        Some(f) if f.as_os_str() == "-" => DockerfileSource::Text {
            text: std::io::read_to_string(std::io::stdin())?,
            name: "Dockerfile".into(),
        },
        f => DockerfileSource::File(f.clone()),
    };
    let build_args: HashMap<String, String> = key_values(&args.build_args, "--build-arg")?
        .into_iter()
        .filter_map(|(k, v)| Some((k.clone(), v.or_else(|| std::env::var(&k).ok())?)))
        .collect();
    let labels: BTreeMap<String, String> = key_values(&args.labels, "--label")?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    let registry = crate::wiring::options(&args.tls);
    let mut exporters = Vec::new();
    for spec in &args.output {
        exporters.push(crate::exporters::parse_output(spec, &args.compression)?);
    }
    if args.push {
        exporters.push(Box::new(crate::exporters::Push {
            store: store.clone(),
            options: registry.clone(),
            compression: args.compression.clone(),
            quiet,
        }) as Box<dyn berth_builder::Exporter>);
    }
    let request = BuildRequest {
        context: args.context.clone(),
        dockerfile,
        build_args,
        target: args.target.clone(),
        platform: args.platform.as_deref().map(str::parse).transpose()?,
        timestamp: args.timestamp,
        env_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
        secrets: args.secrets.clone(),
        labels,
        tags: tags.clone(),
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
        network: match args.network.as_str() {
            "none" => berth_runtime::spec::NetworkMode::None,
            _ => berth_runtime::spec::NetworkMode::Host,
        },
        allow: args.allow.clone(),
        ulimits: args.ulimits.clone(),
        jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
        exe: std::fs::read_link("/proc/self/exe")?,
    };
    let resolver = crate::resolver::StoreResolver {
        store: store.clone(),
        pull: args.pull,
        quiet,
        options: registry.clone(),
        pulled: Mutex::new(Default::default()),
    };
    let progress = crate::progress::view(&args.progress, quiet, args.log_file.as_deref())?;
    let services = Services {
        store: &store,
        resolver: &resolver,
        fetch: Some(Arc::new(crate::download::Download {
            certs_dirs: registry.certs_dirs.clone(),
        })),
        progress: &*progress,
        exporters,
    };
    let built = berth_builder::build(&request, &services).map_err(|e| failed(e, quiet))?;
    let id = built.image.id().clone();
    if let Some(p) = &args.iidfile {
        crate::output_file::write_bytes(
            p,
            id.to_string().as_bytes(),
            crate::output_file::PUBLIC_MODE,
        )
        .map_err(|e| e.context(format!("writing --iidfile {}", p.display())))?;
    }
    if quiet {
        println!("{id}");
        return Ok(0);
    }
    let names: Vec<String> = tags.iter().map(|t| t.familiar()).collect();
    let named = match names.is_empty() {
        true => String::new(),
        false => format!(" as {}", names.join(", ")),
    };
    let (seconds, run, cached) = (
        started.elapsed().as_secs_f64(),
        built.executed,
        built.cached,
    );
    eprintln!("built {id}{named} in {seconds:.1}s ({run} steps run, {cached} cached)");
    Ok(0)
}

/// A failed build as the user sees it: a failed step's excerpt (after its last lines of
/// output under `--quiet`) and where it failed; the Dockerfile's own errors are usage errors.
fn failed(e: BuildError, quiet: bool) -> anyhow::Error {
    let safe = crate::output::terminal_safe_text;
    match e {
        BuildError::Step { at, tail, .. } => {
            if quiet {
                tail.iter().for_each(|l| eprintln!("{}", safe(l)));
            }
            eprintln!("{}", safe(at.excerpt().trim_end()));
            anyhow::anyhow!("the build failed at {at}")
        }
        e @ (BuildError::Dockerfile { .. } | BuildError::Base { .. } | BuildError::Usage(_)) => {
            UsageError(e.to_string()).into()
        }
        BuildError::ReadDockerfile(e) => UsageError(format!("{:#}", anyhow::Error::from(e))).into(),
        e => e.into(),
    }
}
