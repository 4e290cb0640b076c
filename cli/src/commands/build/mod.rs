//! `berth build [OPTIONS] CONTEXT`: the flags parsed and wired to one call of
//! [`berth_builder::build`], with the store, the base-image resolver that pulls
//! ([`crate::resolver`]), downloads for `ADD` ([`crate::download`]), the progress view
//! ([`crate::progress`]) and the outputs ([`crate::exporters`]).
//!
//! RUN steps get the host's network by default (`--network default` is `host`: berth has no
//! bridge network, and builds expect to reach package mirrors); `--network none` isolates
//! them. A Dockerfile cannot widen that: `RUN --network=host` needs `--allow network.host`,
//! `RUN --security=insecure` needs `--allow security.insecure`.

mod args;
mod cache;
mod context;

use std::sync::Arc;
use std::time::Instant;

use berth_builder::{BuildError, Services};
use berth_oci::Reference;
use berth_store::Store;

pub use args::Args;

use crate::UsageError;

pub fn run(store: Arc<Store>, args: Args) -> anyhow::Result<u8> {
    let started = Instant::now();
    let quiet = args.quiet || args.progress == "quiet";
    let tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    if args.push && tags.is_empty() {
        return Err(UsageError("--push needs a name: -t REGISTRY/NAME:TAG".into()).into());
    }
    let cache_from = args
        .cache_from
        .iter()
        .map(|s| cache::parse_from(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cache_to = args
        .cache_to
        .iter()
        .map(|s| cache::parse_to(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let registry = crate::wiring::options(&args.tls);
    // `-o type=registry,name=NAME`: pushed once the build is done; the others are exporters.
    let (pushes, others): (Vec<String>, Vec<String>) = args
        .output
        .iter()
        .cloned()
        .partition(|o| o.split(',').any(|p| p == "type=registry"));
    let push_to = pushes
        .iter()
        .map(|o| registry_output(o))
        .collect::<anyhow::Result<Vec<Vec<Reference>>>>()?
        .concat();
    // Only sent elsewhere: nothing is kept in the store, so cached layers need not come here.
    let lazy = !push_to.is_empty() && others.is_empty() && tags.is_empty() && !args.push;
    let mut exporters = crate::exporters::parse_outputs(&others, &args.compression)?;
    // An output on stdout has it to itself: the image ID goes to stderr then.
    let stdout_taken = crate::exporters::to_stdout(&args.output);
    if args.push {
        exporters.push(Box::new(crate::exporters::Push {
            store: store.clone(),
            options: registry.clone(),
            compression: args.compression.clone(),
            quiet,
        }) as Box<dyn berth_builder::Exporter>);
    }
    let stdin_dockerfile = args.file.as_deref().is_some_and(|f| f.as_os_str() == "-");
    let context = context::open(
        &store,
        &args.context,
        stdin_dockerfile,
        &registry.certs_dirs,
    )?;
    let mut request = args.request(&tags, &context)?;
    request.inline_cache = cache_to.iter().any(|t| matches!(t, cache::To::Inline));
    request.lazy_layers = lazy;
    let platform = request
        .platform
        .clone()
        .unwrap_or_else(berth_oci::Platform::host);
    let imported = cache::import(&cache_from, &registry, &platform, &|w| {
        if !quiet {
            errln!("warning: {}", crate::output::terminal_safe_text(&w));
        }
    });
    let resolver = crate::resolver::StoreResolver::new(
        store.clone(),
        args.pull,
        quiet,
        registry.clone(),
        lazy,
    );
    let progress = crate::progress::view(&args.progress, quiet, args.log_file.as_deref())?;
    let services = Services {
        store: &store,
        resolver: &resolver,
        fetch: Some(Arc::new(crate::download::Download {
            certs_dirs: registry.certs_dirs.clone(),
        })),
        progress: &*progress,
        exporters,
        cache_from: imported.iter().map(|r| r.cache.clone()).collect(),
    };
    let built = berth_builder::build(&request, &services).map_err(|e| failed(e, quiet))?;
    // Base images left in their registries are sources like imported caches.
    let sources: Vec<cache::Read> = imported
        .iter()
        .cloned()
        .chain(
            resolver
                .left_in_registry()
                .into_iter()
                .map(|(cache, r)| cache::Read {
                    cache,
                    registry: Some(r),
                }),
        )
        .collect();
    for dest in &push_to {
        let digest = match lazy {
            true => cache::push_lazy(
                &store,
                &built.image,
                &built.pending,
                &sources,
                dest,
                &registry,
                &args.compression,
            ),
            false => crate::block_on(crate::transfer::push_image(
                store.clone(),
                &built.image,
                dest,
                &registry,
                &args.compression,
                quiet,
            )),
        }
        .map_err(|e| e.context(format!("--output type=registry: {}", dest.familiar())))?;
        if !quiet {
            errln!("pushed {} ({digest})", dest.familiar());
        }
    }
    let mut pushed: Vec<Reference> = push_to.clone();
    if args.push {
        pushed.extend(tags.iter().cloned());
    }
    for to in &cache_to {
        let written = cache::export(
            to,
            &cache::Export {
                store: &store,
                steps: &built.steps,
                image_stages: &built.image_stages,
                options: &registry,
                compression: &args.compression,
                pushed: &pushed,
                cache_mounts: &built.cache_mounts,
                imports: &imported,
            },
        )
        .map_err(|e| e.context("--cache-to"))?;
        if let (Some(w), false) = (written, quiet) {
            errln!("exported the build cache to {w}");
        }
    }
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
        match stdout_taken {
            true => errln!("{id}"),
            false => outln!("{id}"),
        }
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
    errln!("built {id}{named} in {seconds:.1}s ({run} steps run, {cached} cached)");
    Ok(0)
}

/// The names of `-o type=registry,name=NAME[,name=NAME2]`.
fn registry_output(spec: &str) -> anyhow::Result<Vec<Reference>> {
    let mut names = Vec::new();
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", "registry")) => {}
            Some(("name", n)) => names.push(crate::wiring::parse_reference(n)?),
            _ => {
                return Err(UsageError(format!(
                    "--output {spec:?}: type=registry takes name=REGISTRY/NAME:TAG"
                ))
                .into());
            }
        }
    }
    if names.is_empty() {
        return Err(UsageError(format!("--output {spec:?}: type=registry needs name=NAME")).into());
    }
    Ok(names)
}

/// A failed build as the user sees it: a failed step's excerpt (after its last lines of
/// output under `--quiet`) and where it failed; the Dockerfile's own errors are usage errors.
fn failed(e: BuildError, quiet: bool) -> anyhow::Error {
    let safe = crate::output::terminal_safe_text;
    match e {
        BuildError::Step { at, tail, .. } => {
            if quiet {
                tail.iter().for_each(|l| errln!("{}", safe(l)));
            }
            errln!("{}", safe(at.excerpt().trim_end()));
            anyhow::anyhow!("the build failed at {at}")
        }
        e @ (BuildError::Dockerfile { .. } | BuildError::Base { .. } | BuildError::Usage(_)) => {
            UsageError(e.to_string()).into()
        }
        BuildError::ReadDockerfile(e) => UsageError(format!("{:#}", anyhow::Error::from(e))).into(),
        e => e.into(),
    }
}
