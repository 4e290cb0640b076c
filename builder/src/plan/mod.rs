//! The build plan: a typed [`Dockerfile`], the build's inputs (build args, target,
//! platforms), the bases a [`Resolver`] finds and the scanned context in; a [`BuildGraph`]
//! out: the stages the target needs, in order, each with its steps and their cache keys; the
//! stages skipped; and the waves of stages that may run in parallel. A value, computed without
//! root, kernel or network (DESIGN.md, "The plan is a value").
//!
//! Cache keys (DESIGN.md) are sha256 of a canonical encoding, versioned by [`KEY_VERSION`]:
//! - a stage starts from its base: `scratch`, an earlier stage's last layer key, or an
//!   image's ID (its config digest: the same for any form of its manifest);
//! - a step that makes a layer (RUN, COPY, ADD) chains on the previous layer key, adding its
//!   expanded instruction and flags, the platform, and what it can see: for RUN the
//!   environment (ENV and the ARGs in scope, proxy ARGs excepted), user, working directory
//!   and shell; for COPY/ADD from the context each source's name, where it resolves (symlinks
//!   followed among the included entries, as the copy follows them) and the digest of the
//!   entries there (contents, modes, ownership after `--chown`; never times or inodes); for
//!   `COPY --from` the source stage's last layer key;
//! - a step that only changes the config (ENV, LABEL, CMD, ...) gets a key of its own but does
//!   not extend the chain, so a changed LABEL rebuilds no layer (as BuildKit, where such
//!   instructions make no LLB operation). What they change reaches later layers only through
//!   what those layers see (their environment, user, working directory).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use berth_oci::{Digest, ImageConfig};

use crate::context::{ScannedContext, digest_selection};
use crate::dockerfile::shell::Lex;
use crate::error::{BuildError, Location, ResolveError};
use crate::git::{Git, GitRef};
use crate::instructions::stages::{
    PROXY_ARGS, Platforms, StageScope, dependencies, find_stage, global_scope, onbuild_triggers,
    resolve_from, target_stages,
};
use crate::instructions::{Command, Dockerfile, Instruction};

/// Bumped whenever the encoding changes, or what a step makes of the same inputs does (v4:
/// a base image is keyed by its ID, not its manifest), so old cache records stop matching.
pub const KEY_VERSION: &str = "berth-cache-v4";

/// A base image, as the resolver found it.
#[derive(Debug, Clone)]
pub struct BaseImage {
    pub manifest: Digest,
    /// The image ID (its config's digest): what cache keys name, so the same image keys the
    /// same whatever form its manifest has (pulled compressed, or built here uncompressed).
    pub id: Digest,
    pub config: ImageConfig,
    /// Set when the image was left in its registry: its layers are read from there only when
    /// a step must see its tree or the image is kept here.
    pub remote: Option<Arc<RemoteLayers>>,
}

/// The layers of a `FROM` image that is not in the store: its manifest's descriptors
/// (`layers[i]` holds `config.rootfs.diff_ids[i]`), and where their blobs are.
#[derive(Debug)]
pub struct RemoteLayers {
    pub layers: Vec<berth_oci::Descriptor>,
    pub config: ImageConfig,
    /// The registry repository the image came from, as a cache with no records: a blob is
    /// fetched from it, and checked against its descriptor, when a step needs it.
    pub from: Arc<crate::cache::Imported>,
}

/// Finds `FROM` and `--from` images (the store, or a registry through `cli`).
pub trait Resolver {
    fn resolve(&self, name: &str, platform: Option<&str>) -> Result<BaseImage, ResolveError>;

    /// A `FROM` image: as [`Resolver::resolve`], or one whose layers stay in the registry
    /// ([`BaseImage::remote`]) when the build may leave them there.
    fn resolve_base(&self, name: &str, platform: Option<&str>) -> Result<BaseImage, ResolveError> {
        self.resolve(name, platform)
    }
}

/// `env` with `PATH` (Docker's default for Linux) added after the rest when it has none, as
/// BuildKit adds it: a stage's environment from the start, so `ENV PATH=/x:$PATH` extends
/// it, and the image's config.
pub fn default_path(env: &mut Vec<String>) {
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={}", berth_runtime::DEFAULT_PATH));
    }
}

#[derive(Debug, Clone)]
pub enum Base {
    Scratch,
    Stage(usize),
    Image {
        name: String,
        manifest: Digest,
        remote: Option<Arc<RemoteLayers>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// RUN, COPY, ADD: a layer.
    Layer,
    /// Everything else: the config only.
    Config,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub line: usize,
    /// The instruction with the builder's expansions applied.
    pub instruction: Instruction,
    /// The instruction as written (for history and progress).
    pub original: String,
    pub kind: StepKind,
    pub key: Digest,
    /// The key this step chains on: the previous layer step's, the base's, or `link` for
    /// `COPY --link`.
    pub parent: Digest,
    /// Where the step sits, to match it with earlier builds of it: the stage and the
    /// instruction as written.
    pub site: String,
    /// What a layer step's key was made of, by name ([`Inputs`]); empty for config steps.
    pub inputs: Inputs,
    /// What the step runs with: for RUN, the environment (ENV and ARG values, the later of
    /// the two winning for a name, then the proxy build args not declared), and for every
    /// step the user, working directory (cleaned) and shell in effect before it.
    pub context: StepContext,
}

/// The state a step sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepContext {
    pub env: Vec<String>,
    /// The ARGs declared in the stage (and the stages it is built on), in order of first
    /// declaration, each with the value the step sees: RUN's history shows them as BuildKit
    /// does, `|N K=V ...`.
    pub args: Vec<(String, String)>,
    pub user: String,
    pub workdir: String,
    pub shell: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PlannedStage {
    pub index: usize,
    pub name: Option<String>,
    pub base: Base,
    pub steps: Vec<Step>,
    /// The key of the stage's last layer (its base's when it makes none).
    pub layer_key: Digest,
    pub deps: BTreeSet<usize>,
    /// The state after the last step (a later stage built on this one starts there).
    pub end: StepContext,
    /// The variables after the last step: a stage built on this one starts with them, ARGs
    /// included (as BuildKit's stage starts from its base stage's build state).
    pub end_scope: StageScope,
}

#[derive(Debug, Clone)]
pub struct BuildGraph {
    /// The stages the target needs, in Dockerfile order (the target last).
    pub stages: Vec<PlannedStage>,
    /// Stages of the Dockerfile the target does not need.
    pub skipped: Vec<usize>,
    /// Groups of stages whose dependencies are all in earlier groups: each group may run in
    /// parallel.
    pub waves: Vec<Vec<usize>>,
}

pub use crate::cache::Inputs;

/// Past this many files a COPY's inputs keep one digest of them all.
pub const MAX_EXPLAINED_FILES: usize = 20_000;

/// The link parent of `COPY --link` steps.
fn link_parent() -> Digest {
    key(&["link"])
}

fn key(parts: &[&str]) -> Digest {
    let mut s = String::from(KEY_VERSION);
    for p in parts {
        s.push('\0');
        s.push_str(p);
    }
    Digest::of(s.as_bytes())
}

/// What `--from=` names, for a cache key: a stage of this build (its layer key) or an image
/// (its ID for `platform`).
fn from_key(
    df: &Dockerfile,
    planned: &[PlannedStage],
    resolver: &dyn Resolver,
    from: &str,
    platform: &str,
    at: &Location,
) -> Result<String, BuildError> {
    Ok(match find_stage(df, from) {
        Some(j) => planned
            .iter()
            .find(|p| p.index == j)
            .map(|p| p.layer_key.to_string())
            .unwrap_or_default(),
        None => resolver
            .resolve(from, Some(platform))
            .map_err(|source| BuildError::Base {
                at: at.clone(),
                name: from.to_owned(),
                error: Box::new(source),
            })?
            .id
            .to_string(),
    })
}

/// What a RUN step's bind mounts show it, for its cache key (as BuildKit, which keys a bind
/// mount by its source's content): the selected context files' digest, a stage's layer key,
/// or an image's manifest. Cache, tmpfs and secret mounts add nothing: their contents are
/// not inputs of the step (a secret must not be, so that it never reaches a cache record).
fn mount_inputs(
    df: &Dockerfile,
    run: &crate::instructions::Run,
    planned: &[PlannedStage],
    resolver: &dyn Resolver,
    context: &ScannedContext,
    platform: &str,
    at: &Location,
) -> Result<String, BuildError> {
    use crate::context::resolve::{below, resolve};
    use crate::instructions::mounts::Kind;
    let mut inputs = Vec::new();
    for m in run.mounts.iter().filter(|m| m.kind == Kind::Bind) {
        let source = m.source.as_deref().unwrap_or(".");
        let input = match &m.from {
            // What the step sees: the entries at and below the source resolved as the bind
            // resolves it (through a symlink, to what it points at).
            None => match resolve(&context.entries, source) {
                Ok((resolved, _)) => {
                    digest_selection(below(&context.entries, &resolved), None).to_string()
                }
                // Nothing to show: the step fails when it prepares the mount.
                Err(e) => format!("unresolved {source:?}: {e}"),
            },
            Some(from) => from_key(df, planned, resolver, from, platform, at)?,
        };
        inputs.push(format!("{}\0{input}", m.spec));
    }
    Ok(inputs.join("\n"))
}

/// WORKDIR `w` after `current`: absolute, or joined to the current one; cleaned lexically
/// (`.` and `..` resolved, never above `/`).
pub fn resolve_workdir(current: &str, w: &str) -> String {
    let joined = if w.starts_with('/') {
        w.to_owned()
    } else {
        format!("{current}/{w}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn numeric_chown(chown: &Option<String>) -> Option<(u32, u32)> {
    let c = chown.as_deref().filter(|c| !c.is_empty())?;
    let (u, g) = c.split_once(':').unwrap_or((c, c));
    // An empty part is id 0, as the copy resolves it.
    let id = |s: &str| {
        if s.is_empty() {
            Some(0)
        } else {
            s.parse().ok()
        }
    };
    Some((id(u)?, id(g)?))
}

/// `ADD`'s git source, if it has one (a git URL by BuildKit's rules).
pub fn git_source(c: &crate::instructions::CopyInst) -> Option<Result<GitRef, String>> {
    c.sources.iter().find_map(|s| GitRef::for_add(s))
}

/// The commit an `ADD <git URL>` checks out: the key of its content (as BuildKit's, where
/// a new commit invalidates the step and the same commit finds it in the cache).
fn git_commit(c: &crate::instructions::CopyInst, git: Option<&Git>) -> Result<String, String> {
    let r = git_source(c).expect("a git source")?;
    if c.sources.len() != 1 {
        return Err("when using a git source, only one source is allowed".into());
    }
    let git = git.ok_or("git sources are not available here")?;
    git.resolve(&r, c.checksum.as_deref())
        .map_err(|e| e.to_string())
}

/// Computes the plan. `git` resolves the refs of `ADD <git URL>` (the only part of a plan
/// that asks a remote); without it such a step is an error.
pub fn plan(
    df: &Dockerfile,
    build_args: &HashMap<String, String>,
    target: Option<&str>,
    platforms: &Platforms,
    resolver: &dyn Resolver,
    context: &ScannedContext,
    git: Option<&Git>,
) -> Result<BuildGraph, BuildError> {
    let global = global_scope(df, build_args, platforms)?;
    let deps = dependencies(df, build_args, &global)?;
    let needed = target_stages(df, target, &deps)?;
    let lex = Lex::new(df.escape);
    let platform = platforms.target.to_string();
    let mut planned: Vec<PlannedStage> = Vec::new();
    for &i in &needed {
        let stage = &df.stages[i];
        let (base_name, base_platform) = resolve_from(df, stage, &global)?;
        // A FROM without --platform builds for the target platform (as BuildKit).
        let base_platform = base_platform.or_else(|| Some(platform.clone()));
        let lower = base_name.to_lowercase();
        let resolve_base = |name: &str, platform: Option<&str>| {
            resolver
                .resolve_base(name, platform)
                .map_err(|source| BuildError::Base {
                    at: Location::line(stage.from_line),
                    name: name.to_owned(),
                    error: Box::new(source),
                })
        };
        let earlier = df.stages[..i]
            .iter()
            .position(|s| s.from.name.as_deref() == Some(lower.as_str()));
        let stage_name = stage.from.name.clone().unwrap_or_else(|| i.to_string());
        let (base, mut layer_key, env, base_input) = if base_name == "scratch" {
            (
                Base::Scratch,
                key(&["scratch"]),
                Vec::new(),
                "scratch".to_owned(),
            )
        } else if let Some(j) = earlier {
            let from = planned
                .iter()
                .find(|p| p.index == j)
                .expect("dependencies come first");
            (
                Base::Stage(j),
                from.layer_key.clone(),
                from.end.env.clone(),
                format!(
                    "stage {}",
                    from.name.clone().unwrap_or_else(|| j.to_string())
                ),
            )
        } else {
            let image = resolve_base(&base_name, base_platform.as_deref())?;
            let env = image.config.config.env.clone().unwrap_or_default();
            (
                Base::Image {
                    name: base_name.clone(),
                    manifest: image.manifest.clone(),
                    remote: image.remote.clone(),
                },
                key(&["image", &image.id.to_string()]),
                env,
                format!("{base_name} (image {})", image.id),
            )
        };
        // As BuildKit, a stage's environment has PATH from the start (the default when the
        // base sets none), so `ENV PATH=/x:$PATH` extends it.
        let mut env = env;
        default_path(&mut env);
        let mut scope = StageScope::new(&env);
        let (mut user, mut workdir, mut shell) = (
            String::new(),
            "/".to_owned(),
            vec!["/bin/sh".to_owned(), "-c".to_owned()],
        );
        let mut triggers = Vec::new();
        match &base {
            Base::Stage(j) => {
                let end = &planned.iter().find(|p| p.index == *j).expect("planned").end;
                (user, workdir, shell) = (end.user.clone(), end.workdir.clone(), end.shell.clone());
                scope = planned
                    .iter()
                    .find(|p| p.index == *j)
                    .expect("planned")
                    .end_scope
                    .clone();
                // The parent stage's own ONBUILD triggers run first here, as BuildKit runs
                // them for a stage used as a base too.
                let on_build: Vec<String> = df.stages[*j]
                    .instructions
                    .iter()
                    .filter_map(|l| match &l.instruction {
                        Instruction::Onbuild(t) => Some(t.clone()),
                        _ => None,
                    })
                    .collect();
                triggers = onbuild_triggers(&on_build, df.escape)?;
            }
            Base::Image { .. } => {
                let image = resolve_base(&base_name, base_platform.as_deref())?;
                let c = &image.config.config;
                user = c.user.clone().unwrap_or_default();
                workdir = resolve_workdir("/", c.working_dir.as_deref().unwrap_or_default());
                if let Some(s) = c.shell.clone().filter(|s| !s.is_empty()) {
                    shell = s;
                }
                // ONBUILD triggers of the base run first, as if written right after FROM.
                if let Some(on_build) = &c.on_build {
                    triggers = onbuild_triggers(on_build, df.escape)?;
                }
            }
            Base::Scratch => {}
        }
        for t in &mut triggers {
            (t.start_line, t.end_line) = (stage.from_line, stage.from_line);
        }
        let mut steps = Vec::new();
        let mut configured = String::new();
        for located in triggers.iter().chain(&stage.instructions) {
            let at = Location::lines(located.start_line, located.end_line);
            let mut inst = scope
                .apply(&located.instruction, build_args, &global, &lex)
                .map_err(|e| BuildError::Dockerfile {
                    at: at.clone(),
                    message: e.to_string(),
                })?;
            // RUN's mount targets, made absolute once, against the working directory.
            if let Instruction::Run(run) = &mut inst {
                // An environment-only secret has none.
                for m in run.mounts.iter_mut().filter(|m| !m.target.is_empty()) {
                    m.target = resolve_workdir(&workdir, &m.target);
                }
            }
            let written = format!("{inst:?}");
            let mut run_env: Vec<String> =
                scope.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
            // Proxy build args reach RUN without an ARG (Docker's predefined ARGs), and stay
            // out of the cache key and, undeclared, out of the history.
            let mut proxies: Vec<_> = build_args
                .iter()
                .filter(|(k, _)| PROXY_ARGS.contains(&k.as_str()))
                .filter(|(k, _)| !scope.args.iter().any(|(a, _)| a == *k))
                .filter(|(k, _)| scope.get(k).is_none())
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            proxies.sort();
            run_env.extend(proxies);
            let step_context = StepContext {
                env: run_env,
                // Each with the value the step sees (a later ENV's, say); one declared without
                // a value and never set shows as `NAME=` (as BuildKit's history). A declared
                // proxy arg is listed with the credentials of its URL hidden (BuildKit writes
                // them into the image; berth does not).
                args: scope
                    .args
                    .iter()
                    .map(|(k, v)| {
                        let seen = scope.get(k).map(str::to_owned).or_else(|| v.clone());
                        let mut seen = seen.unwrap_or_default();
                        if PROXY_ARGS.contains(&k.as_str()) {
                            seen = crate::redact::url_credentials(&seen).into_owned();
                        }
                        (k.clone(), seen)
                    })
                    .collect(),
                user: user.clone(),
                workdir: workdir.clone(),
                shell: shell.clone(),
            };
            let parent = layer_key.clone();
            let mut inputs = Inputs::new();
            let hidden = |v: &str| crate::context::short_digest(&Digest::of(v.as_bytes()));
            // As the progress view shows it: the credentials of URLs in it hidden, for the
            // text goes into cache records, local and exported.
            let shown = crate::redact::url_credentials(located.original.trim()).into_owned();
            inputs.insert("instruction".into(), shown.clone());
            inputs.insert("expanded".into(), hidden(&written));
            inputs.insert("base".into(), base_input.clone());
            inputs.insert("platform".into(), platform.clone());
            inputs.insert("user".into(), user.clone());
            inputs.insert("workdir".into(), workdir.clone());
            let (kind, step_key) = match &inst {
                Instruction::Run(run) => {
                    let mut visible: Vec<String> = scope
                        .vars()
                        .into_iter()
                        .filter(|(k, _)| !PROXY_ARGS.contains(&k.as_str()))
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    visible.sort();
                    let command = match &run.command {
                        Command::Exec(a) => a.join("\0"),
                        Command::Shell(s) => format!("{}\0{s}", shell.join("\0")),
                    };
                    let mounted =
                        mount_inputs(df, run, &planned, resolver, context, &platform, &at)?;
                    for (k, v) in scope.vars() {
                        if PROXY_ARGS.contains(&k.as_str()) {
                            continue;
                        }
                        let kind = match scope.args.iter().any(|(a, _)| *a == k) {
                            true => "arg",
                            false => "env",
                        };
                        inputs.insert(format!("{kind} {k}"), hidden(&v));
                    }
                    inputs.insert("shell".into(), shell.join(" "));
                    if !mounted.is_empty() {
                        inputs.insert("mounts".into(), hidden(&mounted));
                    }
                    let k = key(&[
                        &layer_key.to_string(),
                        "RUN",
                        &written,
                        &command,
                        &visible.join("\n"),
                        &user,
                        &workdir,
                        &platform,
                        &mounted,
                    ]);
                    (StepKind::Layer, k)
                }
                Instruction::Copy(c) | Instruction::Add(c) => {
                    let add = matches!(inst, Instruction::Add(_));
                    let sources = match &c.from {
                        Some(from) => {
                            let k = from_key(df, &planned, resolver, from, &platform, &at)?;
                            inputs.insert("from".into(), format!("{from} {k}"));
                            k
                        }
                        None if add && git_source(c).is_some() => {
                            let commit = git_commit(c, git)
                                .map_err(|m| BuildError::step(located.start_line, m))?;
                            inputs.insert("git".into(), commit.clone());
                            format!("git\0{commit}")
                        }
                        // Each source as the copy resolves it: a symlink (the source's
                        // own, or a directory on its way) is keyed by what it points at.
                        None => {
                            let chown = numeric_chown(&c.chown);
                            let mut files = BTreeMap::new();
                            for s in &c.sources {
                                crate::context::resolve::source_files(
                                    &context.entries,
                                    s,
                                    chown,
                                    c.parents,
                                    &mut files,
                                );
                            }
                            let keyed: Vec<String> = c
                                .sources
                                .iter()
                                .map(|s| {
                                    crate::context::resolve::source_key(
                                        &context.entries,
                                        s,
                                        chown,
                                        c.parents,
                                    )
                                })
                                .collect();
                            let keyed = keyed.join("\n");
                            if files.len() <= MAX_EXPLAINED_FILES {
                                inputs.extend(
                                    files.into_iter().map(|(p, d)| (format!("file {p}"), d)),
                                );
                            } else {
                                inputs.insert("files".into(), hidden(&keyed));
                            }
                            keyed
                        }
                    };
                    // `--link`: the layer is made apart from the image below it, so its key
                    // leaves the parent out and the layer is reused on any base.
                    let chained = if c.link {
                        "link".to_owned()
                    } else {
                        layer_key.to_string()
                    };
                    let k = key(&[&chained, &written, &sources, &user, &workdir, &platform]);
                    (StepKind::Layer, k)
                }
                Instruction::Workdir(w) => {
                    // WORKDIR creates the directory (owned by USER), so it is a layer step;
                    // when the directory exists the diff is empty and no layer is made.
                    // The config keeps an absolute path as written and joins a relative one
                    // to the current directory (so cleaning it), as BuildKit; the directory
                    // made, and the one later steps run in, is the cleaned path.
                    configured = if w.starts_with('/') {
                        w.clone()
                    } else {
                        resolve_workdir(&workdir, w)
                    };
                    workdir = resolve_workdir(&workdir, w);
                    let k = key(&[
                        &layer_key.to_string(),
                        "WORKDIR",
                        &workdir,
                        &user,
                        &platform,
                    ]);
                    (StepKind::Layer, k)
                }
                other => {
                    match other {
                        Instruction::User(u) => user = u.clone(),
                        Instruction::Shell(s) => shell = s.clone(),
                        _ => {}
                    }
                    (
                        StepKind::Config,
                        key(&[&layer_key.to_string(), "config", &written]),
                    )
                }
            };
            if kind == StepKind::Layer {
                layer_key = step_key.clone();
            }
            // The step carries the image config's WorkingDir, absolute.
            if let Instruction::Workdir(w) = &mut inst {
                w.clone_from(&configured);
            }
            let link = matches!(&inst, Instruction::Copy(c) | Instruction::Add(c) if c.link);
            if kind == StepKind::Config {
                inputs.clear();
            }
            steps.push(Step {
                line: located.start_line,
                instruction: inst,
                original: located.original.clone(),
                kind,
                key: step_key,
                parent: if link { link_parent() } else { parent },
                site: format!("{stage_name}\0{shown}"),
                inputs,
                context: step_context,
            });
        }
        let end = StepContext {
            env: scope.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            args: Vec::new(),
            user,
            workdir,
            shell,
        };
        planned.push(PlannedStage {
            index: i,
            name: stage.from.name.clone(),
            base,
            steps,
            layer_key,
            deps: deps[i].clone(),
            end,
            end_scope: scope,
        });
    }
    let skipped = (0..df.stages.len())
        .filter(|i| !needed.contains(i))
        .collect();
    let mut waves: Vec<Vec<usize>> = Vec::new();
    let mut placed: BTreeSet<usize> = BTreeSet::new();
    while placed.len() < needed.len() {
        let wave: Vec<usize> = needed
            .iter()
            .copied()
            .filter(|i| !placed.contains(i) && deps[*i].iter().all(|d| placed.contains(d)))
            .collect();
        if wave.is_empty() {
            break; // cycles were rejected by `dependencies`
        }
        placed.extend(&wave);
        waves.push(wave);
    }
    Ok(BuildGraph {
        stages: planned,
        skipped,
        waves,
    })
}
