//! Execution: a [`BuildGraph`] in, an image in the store out. Stages run in waves (the
//! stages of a wave in parallel threads, at most [`BuildOptions::jobs`] at once); each stage
//! runs its steps in order:
//!
//! - a config step (ENV, LABEL, CMD, ...) changes the config and leaves an empty-layer
//!   history entry;
//! - a layer step (RUN, COPY, ADD, WORKDIR) first looks its cache key up in the store: a hit
//!   reuses the recorded layer and starts nothing; a miss runs the step over an overlay
//!   (lower dirs: the stage's snapshots; upper: a fresh work dir) — RUN in a container
//!   through the runtime, COPY/ADD/WORKDIR through [`views`](berth_runtime::views) in a
//!   private mount namespace — and commits the upper dir as the layer (store's
//!   `commit_upper`: tar and sha256 in one pass, then renamed into a snapshot), recording it
//!   under the key. An empty diff makes a layer of an empty tar, as BuildKit's does.
//!
//! | module | in → out |
//! |---|---|
//! | this one | the graph → waves of stages, each step looked up in the cache or executed, the image written |
//! | [`run`] | a RUN step → its container run over the stage's tree, its output streamed |
//! | [`tree`] | COPY, ADD, WORKDIR → the stage's tree mounted and written |
//! | [`mounts`] | a RUN's parsed `--mount`s and the `--secret`s → what the container mounts |
//! | [`output`] | a tree (snapshots or the context) → files copied out (`--output type=local`, bind copies) |
//! | [`fsops`] | paths resolved inside a tree (never out of it) → file operations |
//! | [`copy`] | COPY/ADD sources and flags → files written into the image's tree |
//! | [`config`] | config instructions → the image config and its history |
//! | [`policy`] | a RUN's `--network`/`--security` and the build's `--allow` → how it runs |

pub mod config;
pub mod copy;
pub mod fsops;
pub mod mounts;
pub mod output;
pub mod policy;
pub mod run;
pub mod ssh;
pub mod tree;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_oci::{Descriptor, Digest, ImageConfig, Parsed, Platform};
use berth_runtime::spec::NetworkMode;
use berth_store::{CacheRecord, CachedLayer, Store};

use crate::context::ScannedContext;
use crate::error::BuildError;
use crate::instructions::{Dockerfile, Instruction};
use crate::plan::{Base, BuildGraph, PlannedStage, Step, StepKind};

/// Why a download failed (the message names the URL without its credentials).
pub type FetchError = Box<dyn std::error::Error + Send + Sync>;

/// Downloads for `ADD http(s)://...` (cli provides one; the builder has no HTTP client).
pub trait Fetch: Send + Sync + std::fmt::Debug {
    /// Writes the body of `url` into `out`; returns the `Last-Modified` time (seconds since
    /// the epoch) when the server sent one.
    fn fetch(&self, url: &str, out: &mut dyn std::io::Write) -> Result<Option<i64>, FetchError>;
}

/// What a build may vary besides the graph.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The `berth` binary, re-executed as each RUN step's container init.
    pub exe: PathBuf,
    pub no_cache: bool,
    /// Stages (by name or index) rebuilt without the cache.
    pub no_cache_filter: Vec<String>,
    /// `--label`s, added to the final image.
    pub labels: BTreeMap<String, String>,
    /// The network of RUN steps without `--network` (or with `--network=default`): the
    /// host's (the default: berth has no bridge network, and builds expect to reach package
    /// mirrors) or none.
    pub network: NetworkMode,
    /// Entitlements granted on the command line (`--allow`); see [`policy`].
    pub allow: Vec<policy::Entitlement>,
    /// SOURCE_DATE_EPOCH / `--timestamp`: every time in the image (created, history, file
    /// mtimes) is clamped to it, so two builds of the same inputs give the same digest.
    pub epoch: Option<u64>,
    pub platform: Platform,
    /// Stages run at once.
    pub jobs: usize,
    /// `--secret`s by id.
    pub secrets: BTreeMap<String, mounts::Secret>,
    pub fetch: Option<std::sync::Arc<dyn Fetch>>,
    /// `--ssh` sources for `RUN --mount=type=ssh`.
    pub ssh: std::sync::Arc<ssh::Sources>,
    /// Checks out `ADD <git URL>` sources (the same fetcher that resolved their refs).
    pub git: Option<std::sync::Arc<crate::git::Git>>,
    /// `--ulimit`s for RUN steps (not part of the cache key, as BuildKit).
    pub ulimits: Vec<berth_runtime::spec::Rlimit>,
    /// Caches from elsewhere (`--cache-from`), looked up in order after the store's.
    pub imports: Vec<std::sync::Arc<crate::cache::Imported>>,
    /// Write the image's own cache records into its config (`--cache-to type=inline`).
    pub inline_cache: bool,
    /// The image is only sent elsewhere: layers found in an imported cache are not fetched
    /// for it ([`Built::pending`]).
    pub lazy_layers: bool,
}

/// What a build reports as it goes (cli prints it).
#[derive(Debug, Clone)]
pub enum Event {
    /// Something in the Dockerfile or the request that the build goes on with (`line` 0:
    /// not about a line).
    Warning {
        file: String,
        line: usize,
        message: String,
    },
    /// A step starts: `[stage n/total] INSTRUCTION`.
    Step {
        id: String,
        text: String,
    },
    Cached {
        id: String,
    },
    /// A layer step's key was in no cache: why (which input changed since an earlier build
    /// of it).
    Miss {
        id: String,
        reason: String,
    },
    /// One line of a RUN step's output.
    Output {
        id: String,
        line: String,
    },
    /// A step's layer was committed: tar + sha256 of `size` bytes took `elapsed`.
    Committed {
        id: String,
        digest: Digest,
        size: u64,
        elapsed: Duration,
    },
    Done {
        id: String,
        elapsed: Duration,
    },
}

pub trait Progress: Sync {
    fn event(&self, event: Event);

    /// Whether [`Event::Miss`] is shown or kept anywhere: explaining a miss against an
    /// imported cache downloads its inputs, which nothing else needs.
    fn shows_misses(&self) -> bool {
        true
    }
}

/// A built image (not yet tagged).
#[derive(Debug, Clone)]
pub struct Built {
    pub manifest: Parsed,
    pub config: ImageConfig,
    /// Layer steps run / taken from the cache.
    pub executed: usize,
    pub cached: usize,
    /// Every layer step of the build with its cache record, in the order they ran: what a
    /// cache export writes.
    pub steps: Vec<StepRecord>,
    /// The stages whose layers the image holds (the target and the stages it is built on).
    pub image_stages: std::collections::BTreeSet<usize>,
    /// The ids of the `RUN --mount=type=cache` directories the build's steps name (run or
    /// cached).
    pub cache_mounts: std::collections::BTreeSet<String>,
    /// With [`BuildOptions::lazy_layers`]: the image's layers that are not in the store,
    /// where an imported cache or the base image's registry has them.
    pub pending: Vec<PendingLayer>,
}

/// A layer of the image that is only elsewhere: in an imported cache, or in the registry of
/// a base image that was left there.
#[derive(Debug, Clone)]
pub struct PendingLayer {
    /// The layer as the image's manifest names it (an imported step's tar, by its diff-id;
    /// a base image's blob as its registry has it).
    pub digest: Digest,
    pub from: std::sync::Arc<crate::cache::Imported>,
    /// The blob that holds it there.
    pub blob: Descriptor,
}

/// A layer step of a build as a cache export needs it.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub stage: usize,
    /// The key the step was looked up by.
    pub key: Digest,
    pub record: CacheRecord,
    /// Where the layer was found when it came from an imported cache (it may never have
    /// been fetched).
    pub imported: Option<(std::sync::Arc<crate::cache::Imported>, crate::cache::Layer)>,
}

/// A layer of a stage's image that is not in the store yet, and where it is.
#[derive(Debug, Clone)]
enum Pending {
    /// A step's layer from an imported cache: the image names the tar (by its diff-id); the
    /// cache holds it compressed.
    Step {
        from: std::sync::Arc<crate::cache::Imported>,
        layer: crate::cache::Layer,
    },
    /// A layer of a base image left in its registry: the image names the blob itself.
    Base {
        from: std::sync::Arc<crate::cache::Imported>,
        blob: Descriptor,
    },
}

impl Pending {
    fn from(&self) -> &std::sync::Arc<crate::cache::Imported> {
        match self {
            Pending::Step { from, .. } | Pending::Base { from, .. } => from,
        }
    }

    fn blob(&self) -> &Descriptor {
        match self {
            Pending::Step { layer, .. } => &layer.blob,
            Pending::Base { blob, .. } => blob,
        }
    }
}

/// A stage's state as its steps run.
#[derive(Debug, Clone)]
struct StageState {
    config: ImageConfig,
    layers: Vec<Descriptor>,
    snapshots: Vec<PathBuf>,
    chain: Option<Digest>,
    cfg: config::ConfigState,
    /// When the newest layer so far was made (RFC 3339): the `created` of history entries
    /// and of the image, so an unchanged rebuild gives the same image ID.
    created: Option<String>,
    /// Layers that are not in the store yet, by their digest in `layers`: fetched when a
    /// step must see the tree, or the image is written.
    pending: BTreeMap<Digest, Pending>,
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Ctx<'a> {
    store: &'a Store,
    df: &'a Dockerfile,
    context: &'a ScannedContext,
    opts: &'a BuildOptions,
    progress: &'a dyn Progress,
    created: String,
    done: Mutex<HashMap<usize, StageState>>,
    counts: Mutex<(usize, usize)>,
    /// The keys of the steps this build ran, with their lines.
    ran: Mutex<HashMap<Digest, usize>>,
    steps: Mutex<Vec<StepRecord>>,
    /// Records of imported steps, kept in the store once their layers are.
    adopted: Mutex<Vec<(Digest, CacheRecord)>>,
    /// The store's records as earlier builds (by key, their inputs not read yet), read at
    /// the first miss.
    earlier: std::sync::OnceLock<Vec<(Digest, crate::cache::explain::Earlier)>>,
}

/// Runs the build; the target stage's image is written to the store (untagged: the caller
/// tags it).
pub fn build(
    store: &Store,
    df: &Dockerfile,
    graph: &BuildGraph,
    context: &ScannedContext,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<Built, BuildError> {
    let ctx = Ctx {
        store,
        df,
        context,
        opts,
        progress,
        created: rfc3339(opts.epoch.unwrap_or_else(now_secs)),
        done: Mutex::new(HashMap::new()),
        counts: Mutex::new((0, 0)),
        ran: Mutex::new(HashMap::new()),
        steps: Mutex::new(Vec::new()),
        adopted: Mutex::new(Vec::new()),
        earlier: std::sync::OnceLock::new(),
    };
    check_entitlements(graph, opts)?;
    for wave in &graph.waves {
        for chunk in wave.chunks(opts.jobs.max(1)) {
            let results: Vec<Result<(usize, StageState), BuildError>> =
                std::thread::scope(|scope| {
                    let handles: Vec<_> = chunk
                        .iter()
                        .map(|&i| {
                            let ctx = &ctx;
                            scope.spawn(move || {
                                let stage =
                                    graph.stages.iter().find(|s| s.index == i).expect("planned");
                                run_stage(ctx, stage).map(|s| (i, s))
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                        .collect()
                });
            for r in results {
                let (i, state) = r?;
                ctx.done.lock().expect("no panics").insert(i, state);
            }
        }
    }
    let target = graph.stages.last().expect("a target stage");
    let mut state = ctx
        .done
        .lock()
        .expect("no panics")
        .remove(&target.index)
        .expect("built");
    if !opts.labels.is_empty() {
        let labels = state.config.config.labels.get_or_insert_with(BTreeMap::new);
        labels.extend(opts.labels.clone());
    }
    state.config.created = Some(match ctx.opts.epoch {
        Some(_) => ctx.created.clone(),
        None => state.created.clone().unwrap_or_else(|| ctx.created.clone()),
    });
    // The image in the store holds its layers: the imported ones are fetched now, unless
    // the image only leaves.
    if !opts.lazy_layers {
        fetch_pending(&ctx, &state)?;
    }
    let pending = state
        .pending
        .iter()
        .filter(|(d, _)| !store.has_blob(d))
        .map(|(d, p)| PendingLayer {
            digest: d.clone(),
            from: p.from().clone(),
            blob: p.blob().clone(),
        })
        .collect();
    for (key, record) in ctx.adopted.lock().expect("no panics").drain(..) {
        if record
            .layer
            .as_ref()
            .is_none_or(|l| store.has_blob(&l.diff_id))
        {
            store.cache_store(&key, &record)?;
        }
    }
    let mut image_stages = std::collections::BTreeSet::new();
    let mut at = Some(target);
    while let Some(stage) = at {
        image_stages.insert(stage.index);
        at = match stage.base {
            Base::Stage(j) => graph.stages.iter().find(|s| s.index == j),
            _ => None,
        };
    }
    let steps = ctx.steps.into_inner().expect("no panics");
    if opts.inline_cache {
        let inline = inline_cache(&state, &steps, &image_stages);
        state.config.extra.insert(
            crate::cache::INLINE_FIELD.into(),
            serde_json::to_value(inline).expect("plain data"),
        );
    }
    let manifest = store.write_image(&state.config, state.layers.clone())?;
    let (executed, cached) = *ctx.counts.lock().expect("no panics");
    Ok(Built {
        manifest,
        config: state.config,
        executed,
        cached,
        steps,
        image_stages,
        cache_mounts: cache_mount_ids(graph),
        pending,
    })
}

/// The ids of the cache mounts the graph's RUN steps name (the target when there is no id).
fn cache_mount_ids(graph: &BuildGraph) -> std::collections::BTreeSet<String> {
    use crate::instructions::mounts::Kind;
    graph
        .stages
        .iter()
        .flat_map(|s| &s.steps)
        .filter_map(|step| match &step.instruction {
            Instruction::Run(run) => Some(run),
            _ => None,
        })
        .flat_map(|run| &run.mounts)
        .filter(|m| m.kind == Kind::Cache)
        .map(|m| m.id.clone().unwrap_or_else(|| m.target.clone()))
        .collect()
}

/// The inline cache of an image: the records of the steps whose layers it holds, each layer
/// named by its index in the image.
fn inline_cache(
    state: &StageState,
    steps: &[StepRecord],
    image_stages: &std::collections::BTreeSet<usize>,
) -> crate::cache::InlineCache {
    let index: HashMap<&Digest, usize> = state
        .config
        .rootfs
        .diff_ids
        .iter()
        .enumerate()
        .map(|(i, d)| (d, i))
        .collect();
    let records = steps
        .iter()
        .filter(|s| image_stages.contains(&s.stage))
        .filter_map(|s| {
            let layer = match &s.record.layer {
                Some(l) => Some(*index.get(&l.diff_id)?),
                None => None,
            };
            Some(crate::cache::InlineRecord {
                key: s.key.clone(),
                parent: s.record.parent.clone(),
                site: s.record.site.clone(),
                layer,
                size: s.record.layer.as_ref().map_or(0, |l| l.size),
                created: s.record.created,
            })
        })
        .collect();
    crate::cache::InlineCache {
        version: 1,
        records,
    }
}

/// Fetches the state's pending layers into the store.
fn fetch_pending(ctx: &Ctx<'_>, state: &StageState) -> Result<(), BuildError> {
    for (digest, p) in &state.pending {
        fetch_one(ctx, digest, p)?;
    }
    Ok(())
}

/// Fetches one pending layer into the store as the image names it (`digest`): its blob,
/// verified by its descriptor; for an imported step's layer, also the tar inside it,
/// verified by its diff-id. (A base image's blob is checked against its diff-id when it is
/// unpacked, as a pulled image's is.)
fn fetch_one(ctx: &Ctx<'_>, digest: &Digest, p: &Pending) -> Result<(), BuildError> {
    if ctx.store.has_blob(digest) {
        return Ok(());
    }
    let (from, blob) = (p.from(), p.blob());
    let failed = |e: String| {
        let what = match p {
            Pending::Step { .. } => "--cache-from ",
            Pending::Base { .. } => "base image ",
        };
        BuildError::Cache(format!(
            "{what}{}: layer {}: {e}",
            from.source.describe(),
            blob.digest
        ))
    };
    crate::cache::fetch_blob(ctx.store, from, blob).map_err(failed)?;
    if let Pending::Step { layer, .. } = p {
        ctx.store
            .adopt_compressed_layer(blob, digest, layer.size)
            .map_err(|e| failed(e.to_string()))?;
    }
    Ok(())
}

/// Makes the state's tree exist on disk: each layer without a snapshot unpacked into one,
/// its blob fetched first when it is pending. (A base image left in its registry may have
/// its blobs in the store, from an earlier push, and no snapshots.)
fn materialize(ctx: &Ctx<'_>, state: &StageState) -> Result<(), BuildError> {
    let diff_ids = &state.config.rootfs.diff_ids;
    let chains = berth_oci::config::chain_ids(diff_ids);
    for (i, layer) in state.layers.iter().enumerate() {
        if ctx.store.snapshot_path(&chains[i]).is_dir() {
            continue;
        }
        if let Some(p) = state.pending.get(&layer.digest) {
            fetch_one(ctx, &layer.digest, p)?;
        }
        ctx.store.unpack_snapshot(
            layer,
            &diff_ids[i],
            &chains[i],
            &berth_store::layer::unpack::UnpackOptions::default(),
        )?;
    }
    Ok(())
}

/// A layer step's key found in a cache: the store's, else an imported one.
enum Hit {
    Local(CacheRecord),
    Imported(
        std::sync::Arc<crate::cache::Imported>,
        Box<crate::cache::Record>,
    ),
}

fn lookup(ctx: &Ctx<'_>, key: &Digest) -> Option<Hit> {
    if let Some(r) = ctx.store.cache_lookup(key) {
        return Some(Hit::Local(r));
    }
    ctx.opts
        .imports
        .iter()
        .find_map(|i| Some(Hit::Imported(i.clone(), Box::new(i.lookup(key)?.clone()))))
}

/// Why `step` missed: a step before it ran, or what changed since the closest earlier build
/// of it in the store or an imported cache.
fn why_missed(ctx: &Ctx<'_>, step: &Step) -> String {
    use crate::cache::explain::{Earlier, closeness, explain};
    if let Some(line) = ctx.ran.lock().expect("no panics").get(&step.parent) {
        return format!("the step it builds on ran (line {line})");
    }
    let local = ctx.earlier.get_or_init(|| {
        ctx.store
            .cache_records()
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, r)| r.parent.is_some())
            .filter_map(|(hex, r)| {
                let key = format!("sha256:{hex}").parse::<Digest>().ok()?;
                let earlier = Earlier {
                    parent: r.parent,
                    site: r.site,
                    inputs: None,
                };
                Some((key, earlier))
            })
            .collect()
    });
    let best_local = local
        .iter()
        .filter_map(|(k, e)| Some((closeness(&step.parent, &step.site, e)?, k, e)))
        .max_by_key(|(c, ..)| *c);
    let best_imported = ctx
        .opts
        .imports
        .iter()
        .flat_map(|i| i.config.records.iter().map(move |r| (i, r)))
        .filter_map(|(i, r)| {
            let e = Earlier {
                parent: r.parent.clone(),
                site: r.site.clone(),
                inputs: None,
            };
            Some((closeness(&step.parent, &step.site, &e)?, i, r))
        })
        .max_by_key(|(c, ..)| *c);
    let local_inputs = |key: &Digest, e: &Earlier| Earlier {
        inputs: Some(ctx.store.cache_inputs(key)).filter(|i| !i.is_empty()),
        ..e.clone()
    };
    let chosen = match (best_local, best_imported) {
        (Some((cl, k, e)), Some((ci, ..))) if cl >= ci => Some(local_inputs(k, e)),
        (_, Some((_, i, r))) => Some(Earlier {
            parent: r.parent.clone(),
            site: r.site.clone(),
            inputs: i.inputs(r),
        }),
        (Some((_, k, e)), None) => Some(local_inputs(k, e)),
        (None, None) => None,
    };
    explain(&step.parent, &step.inputs, chosen.as_ref())
}

/// Every RUN and ADD of the plan (ONBUILD triggers included) checked against the build's
/// network and entitlements before anything runs.
fn check_entitlements(graph: &BuildGraph, opts: &BuildOptions) -> Result<(), BuildError> {
    for step in graph.stages.iter().flat_map(|s| &s.steps) {
        match &step.instruction {
            Instruction::Run(run) => {
                policy::run_policy(run, opts.network, &opts.allow)
                    .map_err(|m| step_error(step, m))?;
            }
            Instruction::Add(add) => {
                policy::add_policy(&add.sources, opts.network).map_err(|m| step_error(step, m))?
            }
            _ => {}
        }
    }
    Ok(())
}

/// An image every tool can pull and run: no more layers than Docker allows (each one is an
/// overlay lower directory) and a bounded history, the limits berth itself applies to the
/// images it reads.
fn check_image_limits(state: &StageState, step: &Step) -> Result<(), BuildError> {
    use berth_oci::limits::{MAX_HISTORY, MAX_LAYERS};
    if step.kind == StepKind::Layer && state.layers.len() >= MAX_LAYERS {
        return Err(step_error(
            step,
            format!(
                "the image would have more than {MAX_LAYERS} layers, the most an image may have: join RUN, COPY and ADD steps"
            ),
        ));
    }
    if state.config.history.len() >= MAX_HISTORY {
        return Err(step_error(
            step,
            format!("the image would have more than {MAX_HISTORY} history entries"),
        ));
    }
    Ok(())
}

/// A step's failure at its line.
fn step_error(step: &Step, e: impl std::fmt::Display) -> BuildError {
    BuildError::step(step.line, e.to_string())
}

/// The starting state of a stage.
fn base_state(ctx: &Ctx<'_>, stage: &PlannedStage) -> Result<StageState, BuildError> {
    let mut state = match &stage.base {
        // BuildKit's empty image: WorkingDir `/` and the default PATH (added below).
        Base::Scratch => StageState {
            config: ImageConfig {
                architecture: ctx.opts.platform.architecture.clone(),
                os: ctx.opts.platform.os.clone(),
                variant: ctx.opts.platform.variant.clone(),
                config: berth_oci::config::ContainerConfig {
                    working_dir: Some("/".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            layers: Vec::new(),
            snapshots: Vec::new(),
            chain: None,
            cfg: Default::default(),
            created: None,
            pending: BTreeMap::new(),
        },
        Base::Stage(j) => {
            let mut s = ctx
                .done
                .lock()
                .expect("no panics")
                .get(j)
                .cloned()
                .expect("dependencies run first");
            s.cfg = Default::default();
            // The parent's ONBUILD triggers run in this stage (the plan put them first).
            s.config.config.on_build = None;
            s
        }
        Base::Image {
            remote: Some(remote),
            ..
        } => {
            let diff_ids = &remote.config.rootfs.diff_ids;
            let chains = berth_oci::config::chain_ids(diff_ids);
            let pending = remote
                .layers
                .iter()
                .filter(|l| !ctx.store.has_blob(&l.digest))
                .map(|l| {
                    let p = Pending::Base {
                        from: remote.from.clone(),
                        blob: l.clone(),
                    };
                    (l.digest.clone(), p)
                })
                .collect();
            let mut config = remote.config.clone();
            config.config.on_build = None;
            StageState {
                config,
                layers: remote.layers.clone(),
                snapshots: chains.iter().map(|c| ctx.store.snapshot_path(c)).collect(),
                chain: chains.last().cloned(),
                cfg: Default::default(),
                created: remote.config.created.clone(),
                pending,
            }
        }
        Base::Image { manifest, .. } => {
            let image = ctx.store.image_by_manifest(manifest)?;
            let snapshots = ctx.store.ensure_snapshots(&image)?;
            let chain = berth_oci::config::chain_ids(&image.config.rootfs.diff_ids)
                .last()
                .cloned();
            let mut config = image.config.clone();
            // Triggers run in this stage (the plan put them first); they are not inherited.
            config.config.on_build = None;
            StageState {
                config,
                layers: image.manifest_value.layers.clone(),
                snapshots,
                chain,
                cfg: Default::default(),
                created: image.config.created.clone(),
                pending: BTreeMap::new(),
            }
        }
    };
    crate::plan::default_path(state.config.config.env.get_or_insert_with(Vec::new));
    Ok(state)
}

fn run_stage(ctx: &Ctx<'_>, stage: &PlannedStage) -> Result<StageState, BuildError> {
    let mut state = base_state(ctx, stage)?;
    let name = stage
        .name
        .clone()
        .unwrap_or_else(|| format!("stage-{}", stage.index));
    let no_cache = ctx.opts.no_cache
        || ctx
            .opts
            .no_cache_filter
            .iter()
            .any(|f| f.eq_ignore_ascii_case(&name) || *f == stage.index.to_string());
    let total = stage.steps.len();
    for (n, step) in stage.steps.iter().enumerate() {
        let id = format!("{name} {}/{total}", n + 1);
        let text = crate::redact::url_credentials(step.original.trim()).into_owned();
        ctx.progress.event(Event::Step {
            id: id.clone(),
            text,
        });
        let started = Instant::now();
        check_image_limits(&state, step)?;
        match step.kind {
            StepKind::Config => {
                apply_config(&mut state, step)?;
                // BuildKit leaves ONBUILD out of the history (and records ARG).
                if !matches!(step.instruction, Instruction::Onbuild(_)) {
                    state.config.history.push(config::history(
                        state.created.as_deref().unwrap_or(&ctx.created),
                        config::created_by(step),
                        true,
                    ));
                }
            }
            StepKind::Layer => {
                let key = match ctx.opts.epoch {
                    Some(e) => Digest::of(format!("{}\0epoch={e}", step.key).as_bytes()),
                    None => step.key.clone(),
                };
                let hit = if no_cache { None } else { lookup(ctx, &key) };
                let described = |layer: Option<CachedLayer>, created: u64| CacheRecord {
                    layer,
                    created,
                    used: 0,
                    parent: Some(step.parent.clone()),
                    site: step.site.clone(),
                    inputs: step.inputs.clone(),
                };
                let mut imported = None;
                let (layer, created) = match hit {
                    Some(Hit::Local(record)) => {
                        ctx.progress.event(Event::Cached { id: id.clone() });
                        ctx.counts.lock().expect("no panics").1 += 1;
                        let layer = match &record.layer {
                            Some(l) => {
                                Some(ctx.store.ensure_cached_snapshot(l, state.chain.as_ref())?)
                            }
                            None => None,
                        };
                        // Refresh the record's last use (for `prune --filter until=`), at
                        // most hourly: a cached rebuild writes nothing else.
                        let created = match record.created {
                            0 => now_secs(),
                            c => c,
                        };
                        if now_secs().saturating_sub(record.used) > 3600 || record.created == 0 {
                            ctx.store
                                .cache_store(&key, &described(record.layer.clone(), created))?;
                        }
                        (layer, created)
                    }
                    Some(Hit::Imported(from, record)) => {
                        ctx.progress.event(Event::Cached { id: id.clone() });
                        ctx.counts.lock().expect("no panics").1 += 1;
                        imported = record.layer.clone().map(|l| (from.clone(), l));
                        let layer = record.layer.as_ref().map(|l| {
                            let chain_id = match &state.chain {
                                None => l.diff_id.clone(),
                                Some(parent) => {
                                    Digest::of(format!("{parent} {}", l.diff_id).as_bytes())
                                }
                            };
                            if !ctx.store.has_blob(&l.diff_id) {
                                state.pending.insert(
                                    l.diff_id.clone(),
                                    Pending::Step {
                                        from: from.clone(),
                                        layer: l.clone(),
                                    },
                                );
                            }
                            CachedLayer {
                                diff_id: l.diff_id.clone(),
                                size: l.size,
                                chain_id,
                            }
                        });
                        ctx.adopted
                            .lock()
                            .expect("no panics")
                            .push((key.clone(), described(layer.clone(), record.created)));
                        (layer, record.created)
                    }
                    None => {
                        if !no_cache && ctx.progress.shows_misses() {
                            ctx.progress.event(Event::Miss {
                                id: id.clone(),
                                reason: why_missed(ctx, step),
                            });
                        }
                        ctx.counts.lock().expect("no panics").0 += 1;
                        materialize(ctx, &state)?;
                        let layer = execute(ctx, &state, step, &id)?;
                        ctx.ran
                            .lock()
                            .expect("no panics")
                            .insert(step.key.clone(), step.line);
                        let created = ctx.opts.epoch.unwrap_or_else(now_secs);
                        ctx.store
                            .cache_store(&key, &described(layer.clone(), created))?;
                        (layer, created)
                    }
                };
                ctx.steps.lock().expect("no panics").push(StepRecord {
                    stage: stage.index,
                    key: key.clone(),
                    record: described(layer.clone(), created),
                    imported,
                });
                let created = rfc3339(ctx.opts.epoch.unwrap_or(created));
                if state.created.as_ref().is_none_or(|c| *c < created) {
                    state.created = Some(created.clone());
                }
                if let Instruction::Workdir(_) = &step.instruction {
                    apply_config(&mut state, step)?;
                }
                let empty = layer.is_none();
                if let Some(l) = layer {
                    state.layers.push(Descriptor::new(
                        berth_oci::media_type::OCI_LAYER_TAR,
                        l.diff_id.clone(),
                        l.size,
                    ));
                    state.config.rootfs.diff_ids.push(l.diff_id.clone());
                    state.snapshots.push(ctx.store.snapshot_path(&l.chain_id));
                    state.chain = Some(l.chain_id);
                }
                state.config.history.push(config::history(
                    &created,
                    config::created_by(step),
                    empty,
                ));
            }
        }
        ctx.progress.event(Event::Done {
            id,
            elapsed: started.elapsed(),
        });
    }
    Ok(state)
}

/// What a step changes in the image config.
fn apply_config(state: &mut StageState, step: &Step) -> Result<(), BuildError> {
    config::apply(
        &mut state.config,
        &mut state.cfg,
        &step.instruction,
        &step.context.shell,
    )
    .map_err(|m| step_error(step, m))
}

/// Runs one layer step over a fresh upper dir and commits it.
fn execute(
    ctx: &Ctx<'_>,
    state: &StageState,
    step: &Step,
    id: &str,
) -> Result<Option<CachedLayer>, BuildError> {
    let work = ctx.store.work_dir("step")?;
    let io = |what: &str| {
        let what = what.to_owned();
        move |e: std::io::Error| step_error(step, format!("{what}: {e}"))
    };
    let empty = work.path.join("empty");
    berth_store::files::ensure_dir_mode(&empty, berth_store::files::TREE_ROOT)
        .map_err(io("creating a work dir"))?;
    match &step.instruction {
        Instruction::Run(run) => run::run_step(ctx, state, step, id, &work.path, run)?,
        Instruction::Copy(c) | Instruction::Add(c) => {
            let add = matches!(step.instruction, Instruction::Add(_));
            if c.link {
                // Made over an empty tree: the layer holds only what was copied.
                let alone = StageState {
                    snapshots: Vec::new(),
                    ..state.clone()
                };
                tree::copy_step(ctx, &alone, step, &work.path, c, add)?;
            } else {
                tree::copy_step(ctx, state, step, &work.path, c, add)?;
            }
        }
        // The config keeps an absolute WORKDIR as written; the directory made is cleaned.
        Instruction::Workdir(dir) => tree::make_workdir(
            state,
            step,
            &work.path,
            &crate::plan::resolve_workdir("/", dir),
        )?,
        _ => unreachable!("only layer steps execute"),
    }
    let started = Instant::now();
    let layer = ctx
        .store
        .commit_upper(&work.upper(), state.chain.as_ref(), ctx.opts.epoch)?;
    ctx.progress.event(Event::Committed {
        id: id.to_owned(),
        digest: layer.diff_id.clone(),
        size: layer.size,
        elapsed: started.elapsed(),
    });
    Ok(Some(layer))
}

/// The snapshots of `--from=`: a stage of this build (by name or index), else an image.
fn from_snapshots(ctx: &Ctx<'_>, from: &str) -> Result<Vec<PathBuf>, BuildError> {
    match crate::instructions::stages::find_stage(ctx.df, from) {
        Some(j) => {
            let state = ctx
                .done
                .lock()
                .expect("no panics")
                .get(&j)
                .cloned()
                .expect("dependencies run first");
            materialize(ctx, &state)?;
            Ok(state.snapshots)
        }
        None => {
            let image = ctx.store.resolve_for(from, &ctx.opts.platform)?;
            Ok(ctx.store.ensure_snapshots(&image)?)
        }
    }
}

/// The scanned context directory as a root, reopened through the descriptor the scan held
/// ([`ScannedContext::dir`]), never through the context's path. Paths in it are resolved
/// among the scanned entries first ([`crate::context::resolve`]), so they hold no symlink:
/// one met on the way appeared after the scan and fails the lookup (`ELOOP`).
fn context_root(context: &ScannedContext) -> std::io::Result<fsops::InRoot> {
    fsops::InRoot::open_with(
        &berth_runtime::fd_source(context.dir.as_fd()),
        fsops::Resolve::NoSymlinks,
    )
}
