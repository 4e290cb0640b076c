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
//! | [`fsops`] | paths resolved inside a tree (never out of it) → file operations |
//! | [`copy`] | COPY/ADD sources and flags → files written into the image's tree |
//! | [`config`] | config instructions → the image config and its history |
//! | [`mounts`] | `RUN --mount` specs and `--secret`s → what the container mounts |
//! | [`policy`] | a RUN's `--network`/`--security` and the build's `--allow` → how it runs |

pub mod config;
pub mod copy;
pub mod fsops;
pub mod mounts;
pub mod policy;

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_oci::{Descriptor, Digest, ImageConfig, Parsed, Platform};
use berth_runtime::spec::{NetworkMode, ProcessSettings, build_spec};
use berth_runtime::views::{View, with_views};
use berth_runtime::{Bundle, RootfsSource};
use berth_store::{CachedLayer, Store, StoreError};

use crate::context::ScannedContext;
use crate::instructions::{Command, Dockerfile, Instruction};
use crate::plan::{Base, BuildGraph, PlannedStage, Step, StepKind};

/// Downloads for `ADD http(s)://...` (cli provides one; the builder has no HTTP client).
pub trait Fetch: Send + Sync + std::fmt::Debug {
    /// Writes the body of `url` into `out`; returns the `Last-Modified` time (seconds since
    /// the epoch) when the server sent one.
    fn fetch(&self, url: &str, out: &mut dyn std::io::Write) -> Result<Option<i64>, String>;
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
    /// `--ulimit`s for RUN steps (not part of the cache key, as BuildKit).
    pub ulimits: Vec<berth_runtime::spec::Rlimit>,
}

/// What a build reports as it goes (cli prints it).
#[derive(Debug, Clone)]
pub enum Event {
    /// A step starts: `[stage n/total] INSTRUCTION`.
    Step {
        id: String,
        text: String,
    },
    Cached {
        id: String,
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
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A step failed; `line` is the Dockerfile line.
    #[error("{message}")]
    Step {
        line: usize,
        message: String,
        /// The last lines of the step's output.
        tail: Vec<String>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A built image (not yet tagged).
#[derive(Debug, Clone)]
pub struct Built {
    pub manifest: Parsed,
    pub config: ImageConfig,
    /// Layer steps run / taken from the cache.
    pub executed: usize,
    pub cached: usize,
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
    let manifest = store.write_image(&state.config, state.layers.clone())?;
    let (executed, cached) = *ctx.counts.lock().expect("no panics");
    Ok(Built {
        manifest,
        config: state.config,
        executed,
        cached,
    })
}

/// The longest line of a step's output berth holds: a longer one is passed on in pieces of
/// this size, so a step that writes gigabytes without a newline cannot make berth hold them.
const MAX_OUTPUT_LINE: usize = 64 << 10;

/// The next line of a step's output (without its `\n`), at most [`MAX_OUTPUT_LINE`] bytes;
/// `None` at the end or on an error.
fn next_output_line(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let available = match reader.fill_buf() {
            Ok([]) => return (!line.is_empty()).then_some(line),
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return (!line.is_empty()).then_some(line),
        };
        let room = MAX_OUTPUT_LINE - line.len();
        let take = available.len().min(room);
        if let Some(end) = available[..take].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&available[..end]);
            reader.consume(end + 1);
            return Some(line);
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if line.len() == MAX_OUTPUT_LINE {
            return Some(line);
        }
    }
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

fn step_error(step: &Step, message: String) -> BuildError {
    BuildError::Step {
        line: step.line,
        message,
        tail: Vec::new(),
    }
}

/// The starting state of a stage.
fn base_state(ctx: &Ctx<'_>, stage: &PlannedStage) -> Result<StageState, BuildError> {
    let mut state = match &stage.base {
        Base::Scratch => StageState {
            config: ImageConfig {
                architecture: ctx.opts.platform.architecture.clone(),
                os: ctx.opts.platform.os.clone(),
                variant: ctx.opts.platform.variant.clone(),
                ..Default::default()
            },
            layers: Vec::new(),
            snapshots: Vec::new(),
            chain: None,
            cfg: Default::default(),
            created: None,
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
            }
        }
    };
    let env = state.config.config.env.get_or_insert_with(Vec::new);
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={}", berth_runtime::DEFAULT_PATH));
    }
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
                config::apply(
                    &mut state.config,
                    &mut state.cfg,
                    &step.instruction,
                    &step.context.shell,
                )
                .map_err(|m| step_error(step, m))?;
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
                let cached = if no_cache {
                    None
                } else {
                    ctx.store.cache_lookup(&key)
                };
                let layer = match cached {
                    Some(record) => {
                        ctx.progress.event(Event::Cached { id: id.clone() });
                        ctx.counts.lock().expect("no panics").1 += 1;
                        let layer = match &record.layer {
                            Some(l) => {
                                Some(ctx.store.ensure_cached_snapshot(l, state.chain.as_ref())?)
                            }
                            None => None,
                        };
                        // Refresh the record's last use (for `prune --filter until=`).
                        let created = match record.created {
                            0 => now_secs(),
                            c => c,
                        };
                        ctx.store.cache_store(&key, record.layer.clone(), created)?;
                        (layer, created)
                    }
                    None => {
                        ctx.counts.lock().expect("no panics").0 += 1;
                        let layer = execute(ctx, &state, step, &id)?;
                        let created = ctx.opts.epoch.unwrap_or_else(now_secs);
                        ctx.store.cache_store(&key, layer.clone(), created)?;
                        (layer, created)
                    }
                };
                let (layer, created) = layer;
                let created = rfc3339(ctx.opts.epoch.unwrap_or(created));
                if state.created.as_ref().is_none_or(|c| *c < created) {
                    state.created = Some(created.clone());
                }
                if let Instruction::Workdir(_) = &step.instruction {
                    config::apply(
                        &mut state.config,
                        &mut state.cfg,
                        &step.instruction,
                        &step.context.shell,
                    )
                    .map_err(|m| step_error(step, m))?;
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
        Instruction::Run(run) => run_step(ctx, state, step, id, &work.path, run)?,
        Instruction::Copy(c) | Instruction::Add(c) => {
            let add = matches!(step.instruction, Instruction::Add(_));
            if c.link {
                // Made over an empty tree: the layer holds only what was copied.
                let alone = StageState {
                    snapshots: Vec::new(),
                    ..state.clone()
                };
                copy_step(ctx, &alone, step, &work.path, c, add)?;
            } else {
                copy_step(ctx, state, step, &work.path, c, add)?;
            }
        }
        Instruction::Workdir(_) => {
            let dir = crate::plan::resolve_workdir(
                &step.context.workdir,
                match &step.instruction {
                    Instruction::Workdir(w) => w,
                    _ => unreachable!(),
                },
            );
            let owner = resolve_owner(state, &work.path, &step.context.user)
                .map_err(|m| step_error(step, m))?;
            in_view(state, &work.path, None, |root, _| {
                let dest = fsops::InRoot::open(root).map_err(|e| e.to_string())?;
                dest.mkdir_all(
                    &dir,
                    Some(fsops::Meta {
                        mode: 0o755,
                        uid: owner.map_or(0, |o| o.0),
                        gid: owner.map_or(0, |o| o.1),
                        mtime: (0, 0),
                    }),
                )
                .map(|_| ())
                .map_err(|e| format!("creating {dir}: {e}"))
            })
            .map_err(|m| step_error(step, m))?;
        }
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

/// Mounts the stage's tree (writable, upper = the work dir's) and, optionally, a read-only
/// view of other snapshots, and runs `f` on their mount points.
fn in_view<T: Send>(
    state: &StageState,
    work: &Path,
    source: Option<Vec<PathBuf>>,
    f: impl FnOnce(&Path, Option<&Path>) -> Result<T, String> + Send,
) -> Result<T, String> {
    let merged = work.join("merged");
    berth_store::files::create_dir_all(&merged).map_err(|e| e.to_string())?;
    let mut views = vec![View {
        lowers: state.snapshots.clone(),
        upper: Some((work.join("upper"), work.join("work"))),
        target: merged,
    }];
    if let Some(lowers) = source {
        let target = work.join("source");
        berth_store::files::create_dir_all(&target).map_err(|e| e.to_string())?;
        views.push(View {
            lowers,
            upper: None,
            target,
        });
    }
    with_views(&views, &work.join("empty"), |targets| {
        f(&targets[0], targets.get(1).map(PathBuf::as_path))
    })
    .map_err(|e| e.to_string())?
}

/// The snapshots of `--from=`: a stage of this build (by name or index), else an image.
fn from_snapshots(ctx: &Ctx<'_>, from: &str) -> Result<Vec<PathBuf>, BuildError> {
    match crate::instructions::stages::find_stage(ctx.df, from) {
        Some(j) => Ok(ctx
            .done
            .lock()
            .expect("no panics")
            .get(&j)
            .map(|s| s.snapshots.clone())
            .expect("dependencies run first")),
        None => {
            let image = ctx.store.resolve_for(from, &ctx.opts.platform)?;
            Ok(ctx.store.ensure_snapshots(&image)?)
        }
    }
}

/// `--chown` / USER names resolved in the image's `/etc/passwd` and `/etc/group`.
fn resolve_owner(
    state: &StageState,
    work: &Path,
    spec: &str,
) -> Result<Option<(u32, u32)>, String> {
    if spec.is_empty() {
        return Ok(None);
    }
    let numeric = {
        let (u, g) = spec.split_once(':').unwrap_or((spec, ""));
        u.parse::<u32>().ok().zip(if g.is_empty() {
            u.parse::<u32>().ok()
        } else {
            g.parse::<u32>().ok()
        })
    };
    if let Some(ids) = numeric {
        return Ok(Some(ids));
    }
    let spec = spec.to_owned();
    let probe = work.join("probe");
    let _ =
        berth_store::files::ensure_dir_mode(&probe.join("upper"), berth_store::files::TREE_ROOT);
    let _ = berth_store::files::create_dir_all(&probe.join("work"));
    let lookup = in_view(state, &probe, None, move |root, _| {
        let r = fsops::InRoot::open(root).map_err(|e| e.to_string())?;
        let read = |p: &str| {
            r.open_file(p)
                .ok()
                .and_then(|mut f| {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut f, &mut s).ok()?;
                    Some(s)
                })
                .unwrap_or_default()
        };
        let (passwd, group) = (read("etc/passwd"), read("etc/group"));
        // `user` alone means that user's primary group, as Docker's --chown.
        let user =
            berth_runtime::user::resolve(&spec, &passwd, &group).map_err(|e| e.to_string())?;
        Ok((user.uid, user.gid))
    });
    let _ = std::fs::remove_dir_all(&probe);
    lookup.map(Some)
}

fn copy_step(
    ctx: &Ctx<'_>,
    state: &StageState,
    step: &Step,
    work: &Path,
    c: &crate::instructions::CopyInst,
    add: bool,
) -> Result<(), BuildError> {
    let err = |m: String| step_error(step, m);
    let owner = match &c.chown {
        Some(spec) => resolve_owner(state, work, spec).map_err(err)?,
        None => None,
    };
    let chmod = c
        .chmod
        .as_deref()
        .map(copy::Chmod::parse)
        .transpose()
        .map_err(err)?;
    // Where the sources come from: another stage, an image, or the context.
    let source = c
        .from
        .as_deref()
        .map(|from| from_snapshots(ctx, from))
        .transpose()?;
    let scratch = work.join("scratch");
    berth_store::files::create_dir_all(&scratch).map_err(|e| err(e.to_string()))?;
    let job = copy::CopyJob {
        inst: c,
        add,
        workdir: &step.context.workdir,
        owner,
        chmod,
        scratch: &scratch,
        fetch: ctx.opts.fetch.as_deref(),
        exclude_base: String::new(),
    };
    let context = ctx.context;
    let entries = &ctx.context.entries;
    let from_stage = source.is_some();
    in_view(state, work, source, |root, src| {
        let dest = fsops::InRoot::open(root).map_err(|e| e.to_string())?;
        let tree = if from_stage {
            copy::SourceTree {
                root: fsops::InRoot::open(src.expect("mounted")).map_err(|e| e.to_string())?,
                filter: None,
            }
        } else {
            copy::SourceTree {
                root: context_root(context).map_err(|e| e.to_string())?,
                filter: Some(entries),
            }
        };
        copy::copy(&job, &tree, &dest, &c.heredocs)
    })
    .map_err(err)
}

/// The paths the runtime may create as mount points in the upper dir.
const MOUNT_STUBS: &[&str] = &[
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    "proc",
    "sys",
    "dev",
    "etc",
];

/// What a RUN step's `--mount`s became; the secrets' directory is removed and cache locks
/// released on drop.
#[derive(Debug, Default)]
struct PreparedMounts {
    binds: Vec<(PathBuf, String, bool)>,
    overlays: Vec<(Vec<PathBuf>, String)>,
    tmpfs: Vec<(String, Option<u64>)>,
    targets: Vec<String>,
    secrets: Option<mounts::SecretDir>,
    _locks: Vec<berth_store::lock::FileLock>,
    /// Detached copies of the context files and directories that `binds` and `overlays` name
    /// as `/proc/thread-self/fd/N`, handed to the step's init
    /// ([`berth_runtime::Bundle::run_captured`]).
    fds: Vec<OwnedFd>,
    /// Context paths (resolved, `""` for the root) a bind shows live, not as a copy: checked
    /// after the step against the scan ([`check_live_binds`]).
    live: Vec<String>,
}

/// After a step that bound context paths live: every entry at and below them is still as the
/// scan found it (a file's version, a directory's, the context root's), or the step fails
/// and nothing is recorded. A file written, or renamed and put back, while the step could read
/// it moved a time the kernel keeps, so the step's output is never cached under a key that
/// describes other content.
fn check_live_binds(context: &ScannedContext, live: &[String]) -> Result<(), String> {
    if live.is_empty() {
        return Ok(());
    }
    let changed = |path: &str| {
        format!(
            "the build context changed while the step could read it ({}): build again",
            if path.is_empty() { "." } else { path }
        )
    };
    let root = context_root(context).map_err(|e| e.to_string())?;
    for resolved in live {
        if resolved.is_empty() {
            let now = rustix::fs::fstat(&*context.dir).map_err(|e| e.to_string())?;
            if crate::context::StatKey::of(&now) != context.root_version {
                return Err(changed(""));
            }
        }
        for entry in mounts::context_selection(&context.entries, resolved) {
            let Some(version) = entry.version else {
                continue;
            };
            match root.lstat(&entry.path) {
                Ok(st) if crate::context::StatKey::of(&st) == version => {}
                _ => return Err(changed(&entry.path)),
            }
        }
    }
    Ok(())
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

/// Copies `source` out of a tree (snapshots mounted read-only, or the build context) into
/// `dest_dir`, which must exist; says whether the source was a directory (its contents were
/// copied) or a file (copied into `dest_dir` under its name). `scratch` is a work directory.
pub fn export_tree(
    context: Option<&ScannedContext>,
    lowers: Option<Vec<PathBuf>>,
    source: &str,
    scratch: &Path,
    dest_dir: &Path,
) -> Result<bool, String> {
    let mount = scratch.join("tree");
    let empty = scratch.join("empty");
    for d in [&mount, &empty] {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    let inst = crate::instructions::CopyInst {
        sources: vec![source.to_owned()],
        dest: "/".into(),
        from: None,
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        exclude: Vec::new(),
        keep_git_dir: false,
        checksum: None,
        unpack: Some(false),
        heredocs: Vec::new(),
    };
    let job = copy::CopyJob {
        inst: &inst,
        add: false,
        workdir: "/",
        owner: None,
        chmod: None,
        scratch,
        fetch: None,
        exclude_base: String::new(),
    };
    let is_dir = |root: &fsops::InRoot| {
        // Relative: a context root takes no absolute path (`RESOLVE_BENEATH`).
        root.stat(source.trim_start_matches('/'))
            .map(|s| {
                rustix::fs::FileType::from_raw_mode(s.st_mode) == rustix::fs::FileType::Directory
            })
            .map_err(|e| format!("{source:?}: {e}"))
    };
    let dest = fsops::InRoot::open(dest_dir).map_err(|e| e.to_string())?;
    match (lowers, context) {
        (Some(lowers), _) => with_views(
            &[View {
                lowers,
                upper: None,
                target: mount.clone(),
            }],
            &empty,
            |targets| {
                let tree = copy::SourceTree {
                    root: fsops::InRoot::open(&targets[0]).map_err(|e| e.to_string())?,
                    filter: None,
                };
                let dir = is_dir(&tree.root)?;
                copy::copy(&job, &tree, &dest, &[]).map(|()| dir)
            },
        )
        .map_err(|e| e.to_string())?,
        (None, Some(context)) => {
            let tree = copy::SourceTree {
                root: context_root(context).map_err(|e| e.to_string())?,
                filter: Some(&context.entries),
            };
            let dir = is_dir(&tree.root)?;
            copy::copy(&job, &tree, &dest, &[])?;
            Ok(dir)
        }
        (None, None) => Err("nothing to copy from".into()),
    }
}

/// `build --output type=local,dest=DIR`: an image's files, merged, written into `dest`.
/// Files keep their modes, setuid and setgid bits included (the export is the image's
/// tree). So that no other local user can run a setuid-root file from it, every directory
/// berth makes for `dest` is `0700`; an existing `dest` keeps the mode its owner gave it.
pub fn export_rootfs(store: &Store, image: &berth_store::Image, dest: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    let lowers = store.ensure_snapshots(image).map_err(|e| e.to_string())?;
    let work = store.work_dir("export").map_err(|e| e.to_string())?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dest)
        .map_err(|e| format!("creating {}: {e}", dest.display()))?;
    export_tree(None, Some(lowers), "/", &work.path, dest).map(|_| ())
}

fn prepare_mounts(
    ctx: &Ctx<'_>,
    step: &Step,
    work: &Path,
    run: &crate::instructions::Run,
) -> Result<PreparedMounts, BuildError> {
    let err = |m: String| step_error(step, m);
    let mut p = PreparedMounts::default();
    for (n, spec) in run.mounts.iter().enumerate() {
        let m = mounts::MountSpec::parse(spec).map_err(err)?;
        let target = crate::plan::resolve_workdir(&step.context.workdir, &m.target);
        let own = work.join(format!("mount-{n}"));
        std::fs::create_dir_all(&own).map_err(|e| err(e.to_string()))?;
        match m.kind {
            mounts::Kind::Tmpfs => p.tmpfs.push((target.clone(), m.size)),
            mounts::Kind::Cache => {
                let id = m.id.clone().unwrap_or_else(|| target.clone());
                let owner = (
                    m.mode.unwrap_or(0o755),
                    m.uid.unwrap_or(0),
                    m.gid.unwrap_or(0),
                );
                match ctx.store.cache_mount(&id, owner, m.sharing)? {
                    Some((dir, lock)) => {
                        p.binds.push((dir, target.clone(), m.readonly));
                        p._locks.extend(lock);
                    }
                    // `sharing=private` and the cache is in use: a fresh one for this step.
                    None => p.binds.push((own.clone(), target.clone(), m.readonly)),
                }
            }
            mounts::Kind::Secret => {
                let id = m.id.clone().unwrap_or_default();
                let value = match ctx.opts.secrets.get(&id) {
                    Some(s) => s.read().map_err(err)?,
                    None => None,
                };
                let Some(value) = value else {
                    if m.required {
                        return Err(err(format!(
                            "secret {id:?} is required but was not given: pass --secret id={id},src=FILE"
                        )));
                    }
                    continue;
                };
                let secrets = match &mut p.secrets {
                    Some(dir) => dir,
                    none => none.insert(
                        mounts::SecretDir::create(work)
                            .map_err(|e| err(format!("a directory for secrets: {e}")))?,
                    ),
                };
                let file = secrets
                    .write(
                        &format!("secret-{n}"),
                        &value,
                        m.mode.unwrap_or(0o400),
                        m.uid.unwrap_or(0),
                        m.gid.unwrap_or(0),
                    )
                    .map_err(|e| err(format!("writing secret {id:?}: {e}")))?;
                p.binds.push((file, target.clone(), true));
            }
            mounts::Kind::Bind => {
                let source = m.source.clone().unwrap_or_else(|| "/".into());
                let lowers = m
                    .from
                    .as_deref()
                    .map(|from| from_snapshots(ctx, from))
                    .transpose()?;
                if lowers.is_none() {
                    let context = ctx.context;
                    let (resolved, dir) =
                        mounts::resolve_in_context(&context.entries, &source).map_err(err)?;
                    // Opened in the context as scanned, and mounted from a detached copy of
                    // what was opened: a name replaced by a link since the scan is refused,
                    // and one replaced after this open changes nothing.
                    let fd = mounts::open_bind_source(context.dir.as_fd(), &resolved, dir)
                        .map_err(|e| err(format!("--mount source {source:?}: {e}")))?;
                    let detached = || {
                        berth_runtime::detached_tree(fd.as_fd())
                            .map_err(|e| err(format!("--mount source {source:?}: {e}")))
                    };
                    if m.readonly && !dir {
                        let tree = detached()?;
                        p.binds.push((
                            berth_runtime::fd_source(tree.as_fd()),
                            target.clone(),
                            true,
                        ));
                        p.targets.push(target);
                        p.fds.push(tree);
                        p.live.push(resolved);
                        continue;
                    }
                    let hide = own.join("hide");
                    let plain = |path: &Path| !path.to_string_lossy().contains([':', ',', '\\']);
                    if m.readonly
                        && plain(&hide)
                        && std::fs::create_dir(&hide).is_ok()
                        && mounts::hide_ignored(&fd, &resolved, &context.entries, &hide)
                            .map_err(|e| err(format!("--mount source {source:?}: {e}")))?
                    {
                        let tree = detached()?;
                        let lower = berth_runtime::fd_source(tree.as_fd());
                        p.overlays.push((vec![lower, hide], target.clone()));
                        p.targets.push(target);
                        p.fds.push(tree);
                        p.live.push(resolved);
                        continue;
                    }
                }
                // A copy: from a stage or an image, `rw` from the context, or a context
                // directory that an overlay cannot show (a mount inside it, or a path that
                // overlayfs's options cannot carry).
                let source = match (&lowers, ctx.context) {
                    (None, context) => {
                        let (resolved, _) =
                            mounts::resolve_in_context(&context.entries, &source).map_err(err)?;
                        format!("/{resolved}")
                    }
                    (Some(_), _) => source,
                };
                let host = {
                    let copy_dir = own.join("copy");
                    std::fs::create_dir_all(&copy_dir).map_err(|e| err(e.to_string()))?;
                    let context = lowers.is_none().then_some(ctx.context);
                    let dir = export_tree(context, lowers, &source, &own, &copy_dir)
                        .map_err(|e| err(format!("--mount source {source:?}: {e}")))?;
                    if dir {
                        copy_dir
                    } else {
                        copy_dir.join(fsops::components(&source).last().copied().unwrap_or("file"))
                    }
                };
                p.binds.push((host, target.clone(), m.readonly));
            }
        }
        p.targets.push(target);
    }
    Ok(p)
}

/// Removes what the runtime created only to mount on (an empty file or directory that no
/// lower layer has), so it does not end up in the layer.
///
/// The upper dir and the lowers are the step's: every path is looked up in them with no
/// symlink allowed anywhere in it ([`fsops::Resolve::NoSymlinks`]) and the last component
/// removed with `unlinkat` on that resolved parent. The runtime made the stubs under real
/// directories, so a symlink on the way means the step changed the path itself (`mv /d
/// /d.moved; ln -s /host/dir /d`): what is there then is the step's, and is kept. Nothing is
/// followed, so nothing outside the upper dir can be removed.
fn remove_mount_stubs(upper: &Path, lowers: &[PathBuf], extra: &[String]) {
    use fsops::{InRoot, Resolve};
    let Ok(up) = InRoot::open_with(upper, Resolve::NoSymlinks) else {
        return;
    };
    let lowers: Vec<InRoot> = lowers
        .iter()
        .filter_map(|l| InRoot::open_with(l, Resolve::NoSymlinks).ok())
        .collect();
    let in_lowers = |rel: &str| lowers.iter().any(|l| l.lstat(rel).is_ok());
    let extra: Vec<&str> = extra.iter().map(|s| s.trim_start_matches('/')).collect();
    for rel in extra.iter().copied().chain(MOUNT_STUBS.iter().copied()) {
        if up.lstat(rel).is_err() || in_lowers(rel) {
            continue;
        }
        let _ = up.remove_empty(rel);
    }
    // Directories made only to hold a mount point (`/run/secrets` for a secret).
    for rel in &extra {
        let mut dir = Path::new(rel).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            let s = d.to_string_lossy();
            if in_lowers(&s) || !up.remove_empty_dir(&s).unwrap_or(false) {
                break;
            }
            dir = d.parent();
        }
    }
    // A directory copied up only to hold a stub (`/etc` for `/etc/hosts`) and now empty, with
    // the same mode and owner as below: nothing changed in it.
    for rel in ["etc"] {
        let Ok(dir) = up.open_dir(rel) else {
            continue;
        };
        let Ok(meta) = rustix::fs::fstat(&dir) else {
            continue;
        };
        let lower = lowers.iter().rev().find_map(|l| l.lstat(rel).ok());
        let opaque = rustix::fs::fgetxattr(&dir, "trusted.overlay.opaque", &mut [0u8; 4]).is_ok();
        let is_dir = |mode: u32| {
            rustix::fs::FileType::from_raw_mode(mode) == rustix::fs::FileType::Directory
        };
        if let Some(l) = lower
            && !opaque
            && is_dir(l.st_mode)
            && (l.st_mode, l.st_uid, l.st_gid) == (meta.st_mode, meta.st_uid, meta.st_gid)
        {
            let _ = up.remove_empty_dir(rel);
        }
    }
}

fn run_step(
    ctx: &Ctx<'_>,
    state: &StageState,
    step: &Step,
    id: &str,
    work: &Path,
    run: &crate::instructions::Run,
) -> Result<(), BuildError> {
    let err = |m: String| step_error(step, m);
    let sc = &step.context;
    let args: Vec<String> = match &run.command {
        Command::Exec(a) => a.clone(),
        Command::Shell(s) => {
            let script = match (s.trim().strip_prefix("<<"), run.heredocs.first()) {
                (Some(_), Some(h)) if s.split_whitespace().count() == 1 => h.content.clone(),
                _ => s.clone(),
            };
            sc.shell.iter().cloned().chain([script]).collect()
        }
    };
    let policy::RunPolicy {
        network,
        privileged,
    } = policy::run_policy(run, ctx.opts.network, &ctx.opts.allow).map_err(err)?;
    let prepared = prepare_mounts(ctx, step, work, run)?;
    let mut env = sc.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={}", berth_runtime::DEFAULT_PATH));
    }
    let write = |name: &str, text: String| {
        std::fs::write(work.join(name), text).map_err(|e| err(format!("writing {name}: {e}")))
    };
    write("hostname", "buildkitsandbox\n".into())?;
    write(
        "hosts",
        "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n".into(),
    )?;
    write(
        "resolv.conf",
        if network == NetworkMode::Host {
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
        } else {
            String::new()
        },
    )?;
    // Docker's device rules (and with them CAP_MKNOD, so a RUN step can make device nodes,
    // as under BuildKit) when the devices cgroup can enforce them.
    let device_rules = !privileged && berth_runtime::cgroups::devices_enforceable();
    let settings = ProcessSettings {
        args: args.clone(),
        env,
        cwd: sc.workdir.clone(),
        user: sc.user.clone(),
        hostname: "buildkitsandbox".into(),
        network,
        read_only: false,
        privileged,
        etc_files: vec![
            (work.join("hosts"), "/etc/hosts"),
            (work.join("hostname"), "/etc/hostname"),
            (work.join("resolv.conf"), "/etc/resolv.conf"),
        ],
        init: false,
        console: None,
        binds: prepared.binds.clone(),
        overlays: prepared.overlays.clone(),
        tmpfs: prepared.tmpfs.clone(),
        cgroup_path: if device_rules {
            format!(
                "berth/{}",
                work.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )
        } else {
            String::new()
        },
        memory: None,
        cpus: None,
        pids_limit: None,
        rlimits: ctx.opts.ulimits.clone(),
        device_rules,
    };
    let spec = build_spec(&work.join("rootfs"), &settings).map_err(|e| err(e.to_string()))?;
    let source = RootfsSource::Overlay {
        lowers: state.snapshots.clone(),
        upper: work.join("upper"),
        work: work.join("work"),
        // The upper becomes a snapshot: the sync at unmount makes it durable.
        volatile: false,
    };
    let bundle = Bundle::write(work, &spec, &source).map_err(|e| err(e.to_string()))?;
    let (reader, writer) = std::io::pipe().map_err(|e| err(e.to_string()))?;
    let writer2 = writer.try_clone().map_err(|e| err(e.to_string()))?;
    let tail = Mutex::new(std::collections::VecDeque::<String>::new());
    let outcome = std::thread::scope(|scope| {
        let tail = &tail;
        let progress = ctx.progress;
        let id = id.to_owned();
        scope.spawn(move || {
            let mut reader = std::io::BufReader::new(reader);
            while let Some(line) = next_output_line(&mut reader) {
                let line = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_owned();
                {
                    let mut t = tail.lock().expect("no panics");
                    t.push_back(line.clone());
                    if t.len() > 20 {
                        t.pop_front();
                    }
                }
                progress.event(Event::Output {
                    id: id.clone(),
                    line,
                });
            }
        });
        let inherit: Vec<_> = prepared.fds.iter().map(|fd| fd.as_fd()).collect();
        bundle.run_captured(&ctx.opts.exe, writer.into(), writer2.into(), &inherit)
    })
    .map_err(|e| err(e.to_string()))?;
    let live = check_live_binds(ctx.context, &prepared.live);
    remove_mount_stubs(&work.join("upper"), &state.snapshots, &prepared.targets);
    drop(prepared);
    if outcome.exit_code != 0 {
        let shown = match &run.command {
            Command::Exec(a) => serde_json::to_string(a).expect("strings"),
            Command::Shell(s) => format!("{} {s}", sc.shell.join(" ")),
        };
        return Err(BuildError::Step {
            line: step.line,
            message: format!(
                "process \"{shown}\" did not complete successfully: exit code: {}",
                outcome.exit_code
            ),
            tail: tail.into_inner().expect("no panics").into(),
        });
    }
    live.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_are_split_at_newlines_and_capped() {
        let long = vec![b'a'; MAX_OUTPUT_LINE * 2 + 10];
        let mut input = b"one\ntwo\r\n\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nlast");
        let mut reader = std::io::BufReader::with_capacity(1000, &input[..]);
        let mut lines = Vec::new();
        while let Some(l) = next_output_line(&mut reader) {
            lines.push(l);
        }
        let sizes: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            [3, 4, 0, MAX_OUTPUT_LINE, MAX_OUTPUT_LINE, 10, 4],
            "{:?}",
            &lines[..3]
        );
        assert_eq!(lines[0], b"one");
        assert_eq!(lines[6], b"last");
    }
}
