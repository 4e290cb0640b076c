//! Stages and scopes: a typed [`Dockerfile`], `--build-arg`s, platforms and `--target` in;
//! the stages the target needs (in order), each stage's expanded `FROM`, and the variables
//! in scope at each instruction out. BuildKit's rules:
//!
//! - ARGs before the first FROM form the global scope, usable in FROM lines only; inside a
//!   stage an ARG must be declared again (`ARG NAME` takes the global value);
//! - a `--build-arg` overrides an ARG's default wherever the ARG is declared;
//! - ENV shadows an ARG of the same name;
//! - TARGETPLATFORM/OS/ARCH/VARIANT and BUILDPLATFORM/… are in the global scope;
//! - proxy variables (`HTTP_PROXY`, …) may be given without an ARG, and stay out of the history;
//! - stages are referenced by name (FROM, `COPY --from`, `RUN --mount=from=`) or by index
//!   (`COPY --from=0`); a cycle is an error; a `--build-arg` nothing declares is warned about.

use std::collections::{BTreeSet, HashMap};

use berth_oci::Platform;

use super::expand::expand;
use super::{ArgDef, Dockerfile, Instruction, Located, Stage};
use crate::dockerfile::shell::Lex;
use crate::dockerfile::{ParseError, Warning};

/// Build args that need no ARG declaration and never reach the cache keys; they reach RUN's
/// history only when the stage declares them with ARG, and then without URL credentials.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The platforms of a build.
#[derive(Debug, Clone)]
pub struct Platforms {
    pub build: Platform,
    pub target: Platform,
}

impl Default for Platforms {
    fn default() -> Self {
        Platforms {
            build: Platform::host(),
            target: Platform::host(),
        }
    }
}

/// The automatic platform ARGs.
pub fn platform_args(p: &Platforms) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for (prefix, pl) in [("TARGET", &p.target), ("BUILD", &p.build)] {
        m.insert(format!("{prefix}PLATFORM"), pl.to_string());
        m.insert(format!("{prefix}OS"), pl.os.clone());
        m.insert(format!("{prefix}ARCH"), pl.architecture.clone());
        m.insert(
            format!("{prefix}VARIANT"),
            pl.variant.clone().unwrap_or_default(),
        );
    }
    m
}

fn lex(df: &Dockerfile) -> Lex {
    Lex::new(df.escape)
}

fn shell_err(
    start: usize,
    end: usize,
) -> impl Fn(crate::dockerfile::shell::ShellError) -> ParseError {
    move |e| ParseError::span(start, end, e.to_string())
}

/// The global scope: platform ARGs, then the ARGs before the first FROM.
pub fn global_scope(
    df: &Dockerfile,
    build_args: &HashMap<String, String>,
    platforms: &Platforms,
) -> Result<HashMap<String, String>, ParseError> {
    let mut scope = platform_args(platforms);
    for arg in &df.meta_args {
        let value = match (build_args.get(&arg.name), &arg.default) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(d)) => Some(lex(df).process_word(d, &scope).map_err(shell_err(1, 1))?),
            (None, None) => None,
        };
        if let Some(v) = value {
            scope.insert(arg.name.clone(), v);
        }
    }
    Ok(scope)
}

/// A stage's FROM with its words expanded in the global scope: (base, platform).
pub fn resolve_from(
    df: &Dockerfile,
    stage: &Stage,
    global: &HashMap<String, String>,
) -> Result<(String, Option<String>), ParseError> {
    let e = shell_err(stage.from_line, stage.from_line);
    let base = lex(df).process_word(&stage.from.base, global).map_err(&e)?;
    if base.is_empty() {
        return Err(ParseError::at(
            stage.from_line,
            format!("base name ({}) should not be blank", stage.from.base),
        ));
    }
    let platform = stage
        .from
        .platform
        .as_ref()
        .map(|p| lex(df).process_word(p, global))
        .transpose()
        .map_err(&e)?;
    Ok((base, platform))
}

/// The variables in scope inside a stage as its instructions run.
#[derive(Debug, Clone, Default)]
pub struct StageScope {
    /// ARGs declared in the stage, each at the place of its first declaration with its latest
    /// value (absent: declared without a value), as RUN's history lists them.
    pub args: Vec<(String, Option<String>)>,
    /// ENV in effect, in order (starting from the base image's): the image config's Env.
    pub env: Vec<(String, String)>,
    /// What steps see: ENV and ARG values together, where the later of an ENV and an ARG of
    /// one name wins (an `ARG V=a` after `ENV V=e` gives `a`, as BuildKit's build state),
    /// each name where it was last set.
    pub vars: Vec<(String, String)>,
}

impl StageScope {
    /// A scope starting from the base image's `KEY=VALUE` environment.
    pub fn new(base_env: &[String]) -> StageScope {
        let env: Vec<(String, String)> = base_env
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut scope = StageScope {
            args: Vec::new(),
            env: Vec::new(),
            vars: Vec::new(),
        };
        for (k, v) in &env {
            scope.set_env(k, v);
        }
        scope
    }

    /// Variables for expansion: the step's variables.
    pub fn vars(&self) -> HashMap<String, String> {
        self.vars.iter().cloned().collect()
    }

    /// The value a step sees for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn set_var(&mut self, key: &str, value: &str) {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_owned(), value.to_owned()));
    }

    /// Declares ARGs: the build arg, else the default (expanded), else the global value.
    pub fn declare(
        &mut self,
        defs: &[ArgDef],
        build_args: &HashMap<String, String>,
        global: &HashMap<String, String>,
        lex: &Lex,
    ) -> Result<(), crate::dockerfile::shell::ShellError> {
        for d in defs {
            let value = match (build_args.get(&d.name), &d.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => Some(lex.process_word(default, &self.vars())?),
                (None, None) => global.get(&d.name).cloned(),
            };
            if let Some(v) = &value {
                self.set_var(&d.name, v);
            }
            match self.args.iter_mut().find(|(k, _)| k == &d.name) {
                Some(arg) => arg.1 = value,
                None => self.args.push((d.name.clone(), value)),
            }
        }
        Ok(())
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self.set_var(key, value);
    }

    /// Applies an instruction's effect on the scope (ARG, ENV), expanding as the builder does;
    /// returns the expanded instruction.
    pub fn apply(
        &mut self,
        inst: &Instruction,
        build_args: &HashMap<String, String>,
        global: &HashMap<String, String>,
        lex: &Lex,
    ) -> Result<Instruction, crate::dockerfile::shell::ShellError> {
        let expanded = expand(inst, lex, &self.vars())?;
        match (&expanded, inst) {
            (_, Instruction::Arg(defs)) => self.declare(defs, build_args, global, lex)?,
            (Instruction::Env(pairs), _) => {
                for p in pairs {
                    self.set_env(&p.key, &p.value);
                }
            }
            _ => {}
        }
        Ok(expanded)
    }
}

/// What a stage refers to: another stage (by index) or an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stage(usize),
    Image(String),
}

/// Finds a stage by name (case-insensitive) or index, among all stages.
pub fn find_stage(df: &Dockerfile, reference: &str) -> Option<usize> {
    let lower = reference.to_lowercase();
    if let Some(i) = df
        .stages
        .iter()
        .position(|s| s.from.name.as_deref() == Some(lower.as_str()))
    {
        return Some(i);
    }
    reference
        .parse::<usize>()
        .ok()
        .filter(|i| *i < df.stages.len())
}

/// Each stage's dependencies on other stages, found by walking it with its scope so that
/// `COPY --from=$STAGE` resolves.
pub fn dependencies(
    df: &Dockerfile,
    build_args: &HashMap<String, String>,
    global: &HashMap<String, String>,
) -> Result<Vec<BTreeSet<usize>>, ParseError> {
    let lex = lex(df);
    let mut deps = Vec::with_capacity(df.stages.len());
    for stage in &df.stages {
        let mut set = BTreeSet::new();
        let (base, _) = resolve_from(df, stage, global)?;
        let lower = base.to_lowercase();
        if let Some(i) = df.stages[..stage.index]
            .iter()
            .position(|s| s.from.name.as_deref() == Some(lower.as_str()))
        {
            set.insert(i);
        }
        let mut scope = StageScope::default();
        for located in &stage.instructions {
            let e = shell_err(located.start_line, located.end_line);
            let inst = scope
                .apply(&located.instruction, build_args, global, &lex)
                .map_err(&e)?;
            let mut refs = Vec::new();
            match &inst {
                Instruction::Copy(c) => refs.extend(c.from.clone()),
                Instruction::Run(r) => {
                    for f in r.mounts.iter().filter_map(|m| m.from.as_deref()) {
                        refs.push(lex.process_word(f, &scope.vars()).map_err(&e)?);
                    }
                }
                _ => {}
            }
            for r in refs {
                if let Some(i) = find_stage(df, &r) {
                    if i == stage.index {
                        return Err(ParseError::span(
                            located.start_line,
                            located.end_line,
                            format!(
                                "circular dependency detected on stage: {}",
                                stage.display_name()
                            ),
                        ));
                    }
                    set.insert(i);
                }
            }
        }
        deps.push(set);
    }
    check_cycles(df, &deps)?;
    Ok(deps)
}

fn check_cycles(df: &Dockerfile, deps: &[BTreeSet<usize>]) -> Result<(), ParseError> {
    // 0 = unseen, 1 = on the current path, 2 = done
    fn visit(i: usize, deps: &[BTreeSet<usize>], state: &mut [u8]) -> Option<usize> {
        match state[i] {
            1 => return Some(i),
            2 => return None,
            _ => {}
        }
        state[i] = 1;
        for &d in &deps[i] {
            if let Some(c) = visit(d, deps, state) {
                return Some(c);
            }
        }
        state[i] = 2;
        None
    }
    let mut state = vec![0u8; deps.len()];
    for i in 0..deps.len() {
        if let Some(c) = visit(i, deps, &mut state) {
            let stage = &df.stages[c];
            return Err(ParseError::at(
                stage.from_line,
                format!(
                    "circular dependency detected on stage: {}",
                    stage.display_name()
                ),
            ));
        }
    }
    Ok(())
}

/// The stages the target needs, in Dockerfile order (the target last). Without a target,
/// the last stage is built.
pub fn target_stages(
    df: &Dockerfile,
    target: Option<&str>,
    deps: &[BTreeSet<usize>],
) -> Result<Vec<usize>, ParseError> {
    let t = match target {
        None => df.stages.len() - 1,
        Some(name) => df
            .stages
            .iter()
            .position(|s| s.from.name.as_deref() == Some(name.to_lowercase().as_str()))
            .ok_or_else(|| {
                let names: Vec<String> = df
                    .stages
                    .iter()
                    .filter_map(|s| s.from.name.clone())
                    .collect();
                ParseError::at(
                    1,
                    format!(
                        "target stage {name:?} could not be found (stages: {})",
                        if names.is_empty() {
                            "none named".into()
                        } else {
                            names.join(", ")
                        }
                    ),
                )
            })?,
    };
    let mut needed = BTreeSet::new();
    let mut todo = vec![t];
    while let Some(i) = todo.pop() {
        if needed.insert(i) {
            todo.extend(deps[i].iter().copied());
        }
    }
    Ok(needed.into_iter().collect())
}

/// `--build-arg`s nothing in the needed stages (or the global scope) declares.
pub fn unused_build_args(
    df: &Dockerfile,
    needed: &[usize],
    build_args: &HashMap<String, String>,
) -> Vec<String> {
    let mut declared: BTreeSet<&str> = df.meta_args.iter().map(|a| a.name.as_str()).collect();
    for &i in needed {
        for l in &df.stages[i].instructions {
            if let Instruction::Arg(defs) = &l.instruction {
                declared.extend(defs.iter().map(|d| d.name.as_str()));
            }
        }
    }
    let automatic = platform_args(&Platforms::default());
    let mut unused: Vec<String> = build_args
        .keys()
        .filter(|k| {
            !declared.contains(k.as_str())
                && !PROXY_ARGS.contains(&k.as_str())
                && !automatic.contains_key(*k)
                && !k.starts_with("BUILDKIT_")
                && k.as_str() != "SOURCE_DATE_EPOCH"
        })
        .cloned()
        .collect();
    unused.sort();
    unused
}

/// The warning BuildKit prints for unused build args.
pub fn unused_build_args_warning(unused: &[String]) -> Option<Warning> {
    (!unused.is_empty()).then(|| Warning {
        line: 0,
        message: format!(
            "One or more build-args [{}] were not consumed",
            unused.join(" ")
        ),
    })
}

/// A base image's ONBUILD triggers, typed, to run first in a stage built on it.
pub fn onbuild_triggers(triggers: &[String], escape: char) -> Result<Vec<Located>, ParseError> {
    let mut out = Vec::new();
    for (n, trigger) in triggers.iter().enumerate() {
        let text = if escape == '\\' {
            trigger.clone()
        } else {
            format!("# escape={escape}\n{trigger}")
        };
        let parsed = crate::dockerfile::parse(&text).map_err(|e| {
            ParseError::at(
                0,
                format!("ONBUILD trigger {} ({trigger:?}): {}", n + 1, e.message),
            )
        })?;
        let node = &parsed.ast.children[0];
        super::meta::check_trigger(node)
            .map_err(|m| ParseError::at(0, format!("ONBUILD trigger {trigger:?}: {m}")))?;
        let instruction = super::parse_instruction(node, &mut Vec::new())
            .map_err(|m| ParseError::at(0, format!("ONBUILD trigger {trigger:?}: {m}")))?;
        out.push(Located {
            instruction,
            start_line: 0,
            end_line: 0,
            original: trigger.clone(),
        });
    }
    Ok(out)
}
