//! A build as one call: [`build`] takes the request (what `berth build`'s flags say) and the
//! services the caller wires in (the store, a [`Resolver`] for base images, a [`Fetch`] for
//! `ADD http(s)://`, a [`Progress`] view, [`Exporter`]s for the outputs), and runs the whole
//! path: the Dockerfile read and parsed, the context scanned (its stat index kept in the
//! store), the plan made, the steps run or found in the cache, the image written and tagged,
//! then exported. Every failure is a [`BuildError`], located in the Dockerfile where it has a
//! place.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use berth_oci::{Platform, Reference};
use berth_runtime::spec::{NetworkMode, Rlimit};
use berth_store::{Image, Store};

use crate::error::{BuildError, ExportError};
use crate::exec::policy::Entitlement;
use crate::exec::{BuildOptions, Event, Fetch, Progress, mounts::Secret};
use crate::git::Git;
use crate::instructions::stages;
use crate::plan::Resolver;

/// Where the Dockerfile comes from.
#[derive(Debug, Clone)]
pub enum DockerfileSource {
    /// `-f PATH` (when `None`: `CONTEXT/Dockerfile`, else `CONTEXT/Containerfile`, as Buildah
    /// and Podman look for it): a file inside the context is read
    /// inside it (symlinks resolved there, regular files only, bounded); one outside it is
    /// read as given.
    File(Option<PathBuf>),
    /// The text itself (`-f -`), with the name errors give it.
    Text { text: String, name: String },
}

/// What to build, and how: `berth build`'s flags, parsed.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub context: PathBuf,
    /// Where the context came from when the caller received it as a stream (`stdin`, a
    /// URL) and unpacked it into `context` for this build only: messages name it so, and
    /// no stat index is kept for a directory no build will see again.
    pub received_from: Option<String>,
    pub dockerfile: DockerfileSource,
    pub build_args: HashMap<String, String>,
    pub target: Option<String>,
    /// The target platform (default: the host's).
    pub platform: Option<Platform>,
    /// `--timestamp`: every time in the image, as `SOURCE_DATE_EPOCH`.
    pub timestamp: Option<u64>,
    /// `SOURCE_DATE_EPOCH` from the caller's environment, used when neither `timestamp` nor
    /// the build arg of that name is given.
    pub env_epoch: Option<String>,
    /// `--secret` specs (`id=ID,src=FILE` or `id=ID,env=VAR`).
    pub secrets: Vec<String>,
    /// `--ssh` specs (`default`, `ID`, `ID=SOCKET` or `ID=KEY[,KEY]`).
    pub ssh: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub tags: Vec<Reference>,
    pub no_cache: bool,
    pub no_cache_filter: Vec<String>,
    /// The network of RUN steps: the host's or none.
    pub network: NetworkMode,
    pub allow: Vec<Entitlement>,
    pub ulimits: Vec<Rlimit>,
    /// Stages run at once.
    pub jobs: usize,
    /// The `berth` binary, re-executed as each RUN step's container init.
    pub exe: PathBuf,
    /// `--cache-to type=inline`: the image's config carries the cache records of its own
    /// steps ([`crate::cache::INLINE_FIELD`]).
    pub inline_cache: bool,
    /// The image is only sent elsewhere (`-o type=registry`): it is not named in the store,
    /// and layers an imported cache holds are not fetched for it ([`Outcome::pending`]).
    pub lazy_layers: bool,
}

/// Writes or sends the built image somewhere (`--output`, a push).
pub trait Exporter {
    /// What it does, for messages: `--output DEST`, `writing FILE`, `push`.
    fn describe(&self) -> String;
    fn export(&self, store: &Store, image: &Image, tags: &[Reference]) -> Result<(), ExportError>;
}

/// `--output type=local,dest=DIR`: the image's files, merged, written into `DIR`
/// ([`crate::exec::output::export_rootfs`]).
#[derive(Debug, Clone)]
pub struct LocalExport {
    pub dest: PathBuf,
}

impl Exporter for LocalExport {
    fn describe(&self) -> String {
        format!("--output {}", self.dest.display())
    }

    fn export(&self, store: &Store, image: &Image, _tags: &[Reference]) -> Result<(), ExportError> {
        crate::exec::output::export_rootfs(store, image, &self.dest).map_err(ExportError::from)
    }
}

/// What the caller wires into a build.
pub struct Services<'a> {
    pub store: &'a Store,
    pub resolver: &'a dyn Resolver,
    pub fetch: Option<Arc<dyn Fetch>>,
    pub progress: &'a dyn Progress,
    /// Run in order once the image is in the store and tagged.
    pub exporters: Vec<Box<dyn Exporter + 'a>>,
    /// Caches from elsewhere (`--cache-from`), looked up in order after the store's.
    pub cache_from: Vec<Arc<crate::cache::Imported>>,
}

impl std::fmt::Debug for Services<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let exporters: Vec<String> = self.exporters.iter().map(|e| e.describe()).collect();
        f.debug_struct("Services")
            .field("store", &self.store.root())
            .field("fetch", &self.fetch)
            .field("exporters", &exporters)
            .finish_non_exhaustive()
    }
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The image, in the store, tagged with every requested name (untagged when none).
    pub image: Image,
    /// Layer steps run / taken from the cache.
    pub executed: usize,
    pub cached: usize,
    /// Every layer step with its cache record, the stages the image holds and the cache
    /// mounts used: what `--cache-to` exports.
    pub steps: Vec<crate::exec::StepRecord>,
    pub image_stages: std::collections::BTreeSet<usize>,
    pub cache_mounts: std::collections::BTreeSet<String>,
    /// With `lazy_layers`: the image's layers only an imported cache holds.
    pub pending: Vec<crate::exec::PendingLayer>,
}

/// Runs the build `request` with `services`.
pub fn build(request: &BuildRequest, services: &Services<'_>) -> Result<Outcome, BuildError> {
    let store = services.store;
    let git = Arc::new(Git::new(store.tmp_dir(), crate::git::Limits::from_env()));
    // A git URL as the context: checked out (kept until the build ends), then read as a
    // directory.
    let checkout = git_context(request, &git)?;
    let in_checkout;
    let request = match &checkout {
        Some((_, dir)) => {
            in_checkout = checked_out_request(request, dir);
            &in_checkout
        }
        None => request,
    };
    let dockerfile = match &request.dockerfile {
        DockerfileSource::File(None) => {
            let shown = request
                .received_from
                .clone()
                .unwrap_or_else(|| request.context.display().to_string());
            DockerfileSource::File(crate::context::default_dockerfile(
                &request.context,
                &shown,
            )?)
        }
        d => d.clone(),
    };
    let (text, name) = read_dockerfile(request, &dockerfile)?;
    let locate = |e: BuildError| e.locate(&text, &name);
    let df = crate::instructions::parse_dockerfile(&text).map_err(|e| locate(e.into()))?;
    let epoch = source_date_epoch(request)?;
    let mut platforms = stages::Platforms::default();
    if let Some(p) = &request.platform {
        platforms.target = p.clone();
    }
    let mut secrets = BTreeMap::new();
    for spec in &request.secrets {
        let (id, secret) = Secret::parse(spec).map_err(BuildError::Usage)?;
        secrets.insert(id, secret);
    }
    let ssh = crate::exec::ssh::Sources::new(&request.ssh, &store.tmp_dir())
        .map_err(BuildError::Usage)?;
    // The context: .dockerignore, then a scan that reuses the saved stat index.
    let dockerfile_path = match &dockerfile {
        DockerfileSource::File(p) => p.as_deref(),
        DockerfileSource::Text { .. } => None,
    };
    let matcher = crate::context::load_matcher(&request.context, dockerfile_path)?;
    // A checkout or a received context is new every build: its stat index would never be
    // read again.
    let keep_index = request.received_from.is_none() && checkout.is_none();
    let mut index = match keep_index {
        true => store
            .read_context_index(&request.context)
            .map(|b| crate::context::StatIndex::from_bytes(&b))
            .unwrap_or_default(),
        false => Default::default(),
    };
    let context = crate::context::scan(&request.context, &matcher, &mut index)?;
    if keep_index {
        store.write_context_index(&request.context, &index.to_bytes())?;
    }
    let graph = crate::plan::plan(
        &df,
        &request.build_args,
        request.target.as_deref(),
        &platforms,
        services.resolver,
        &context,
        Some(&git),
    )
    .map_err(locate)?;
    let needed: Vec<usize> = graph.stages.iter().map(|s| s.index).collect();
    let mut warnings = df.warnings.clone();
    warnings.extend(stages::unused_build_args_warning(
        &stages::unused_build_args(&df, &needed, &request.build_args),
    ));
    for w in warnings {
        services.progress.event(Event::Warning {
            file: name.clone(),
            line: w.line,
            message: w.message,
        });
    }
    let options = BuildOptions {
        exe: request.exe.clone(),
        no_cache: request.no_cache,
        no_cache_filter: request.no_cache_filter.clone(),
        labels: request.labels.clone(),
        network: request.network,
        allow: request.allow.clone(),
        epoch,
        platform: platforms.target.clone(),
        jobs: request.jobs,
        secrets,
        fetch: services.fetch.clone(),
        git: Some(git.clone()),
        ssh: Arc::new(ssh),
        ulimits: request.ulimits.clone(),
        imports: services.cache_from.clone(),
        inline_cache: request.inline_cache,
        lazy_layers: request.lazy_layers,
    };
    let built = crate::exec::build(store, &df, &graph, &context, &options, services.progress)
        .map_err(locate)?;
    let desc = built.manifest.descriptor();
    let image = match request.lazy_layers {
        // Not named: its config and manifest go at the next gc.
        true => store.load_image(&desc)?,
        false => {
            if request.tags.is_empty() {
                store.add_untagged(&desc)?;
            }
            for t in &request.tags {
                store.set_tag(t, &desc)?;
            }
            store.resolve(&desc.digest.to_string())?
        }
    };
    for exporter in &services.exporters {
        exporter
            .export(store, &image, &request.tags)
            .map_err(|error| BuildError::Export {
                what: exporter.describe(),
                error,
            })?;
    }
    Ok(Outcome {
        image,
        executed: built.executed,
        cached: built.cached,
        steps: built.steps,
        image_stages: built.image_stages,
        cache_mounts: built.cache_mounts,
        pending: built.pending,
    })
}

/// The context as a git URL (BuildKit's rules; a path that exists is a directory, never a
/// URL): the checkout, with the directory the build reads (its subdirectory, resolved inside
/// it). The `.git` directory is not part of the context.
fn git_context(
    request: &BuildRequest,
    git: &Git,
) -> Result<Option<(crate::git::Checkout, PathBuf)>, BuildError> {
    let Some(text) = request.context.to_str() else {
        return Ok(None);
    };
    if request.context.symlink_metadata().is_ok() {
        return Ok(None);
    }
    let Some(r) = crate::git::GitRef::parse(text) else {
        return Ok(None);
    };
    let shown = crate::redact::url_credentials(text).into_owned();
    let r = r.map_err(|m| BuildError::Usage(format!("context {shown}: {m}")))?;
    let failed = |e: crate::git::GitError| BuildError::Usage(format!("context: {e}"));
    let commit = git.resolve(&r, None).map_err(failed)?;
    let checkout = git
        .checkout(&r, &commit, r.keep_git_dir == Some(true))
        .map_err(failed)?;
    let root = berth_fsroot::Root::open(&checkout.root())
        .map_err(|e| BuildError::Usage(format!("context {shown}: {e}")))?;
    let sub = if r.subdir.is_empty() { "." } else { &r.subdir };
    let dir = root
        .canonical(sub)
        .ok()
        .filter(|real| {
            root.stat(real)
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        })
        .ok_or_else(|| {
            BuildError::Usage(format!(
                "context {shown}: {:?} is not a directory of the repository",
                r.subdir
            ))
        })?;
    let dir = checkout.root().join(dir);
    Ok(Some((checkout, dir)))
}

/// The request with a checkout as its context: `-f` relative to it (as BuildKit reads the
/// Dockerfile from a git context).
fn checked_out_request(request: &BuildRequest, dir: &std::path::Path) -> BuildRequest {
    let dockerfile = match &request.dockerfile {
        DockerfileSource::File(Some(p)) if p.is_relative() => {
            DockerfileSource::File(Some(dir.join(p)))
        }
        other => other.clone(),
    };
    BuildRequest {
        context: dir.to_owned(),
        dockerfile,
        ..request.clone()
    }
}

/// The Dockerfile's text and the name errors give it.
fn read_dockerfile(
    request: &BuildRequest,
    dockerfile: &DockerfileSource,
) -> Result<(String, String), BuildError> {
    match dockerfile {
        DockerfileSource::Text { text, name } => Ok((text.clone(), name.clone())),
        DockerfileSource::File(path) => {
            let bytes = crate::context::read_dockerfile(&request.context, path.as_deref())
                .map_err(BuildError::ReadDockerfile)?;
            let name = path
                .as_deref()
                .and_then(|p| p.file_name())
                .map_or("Dockerfile".into(), |n| n.to_string_lossy().into_owned());
            Ok((String::from_utf8_lossy(&bytes).into_owned(), name))
        }
    }
}

/// `--timestamp`, else the `SOURCE_DATE_EPOCH` build arg, else the environment's.
fn source_date_epoch(request: &BuildRequest) -> Result<Option<u64>, BuildError> {
    if let Some(t) = request.timestamp {
        return Ok(Some(t));
    }
    request
        .build_args
        .get("SOURCE_DATE_EPOCH")
        .or(request.env_epoch.as_ref())
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                BuildError::Usage(format!("SOURCE_DATE_EPOCH {s:?}: expected seconds"))
            })
        })
        .transpose()
}
