//! Typed instructions: the parser's AST in, [`Dockerfile`] (global ARGs and [`Stage`]s of
//! typed [`Instruction`]s, each with its lines) out, with BuildKit's checks: known keywords
//! (an unknown one gets the nearest as a suggestion), the flags each instruction accepts,
//! argument counts, stage names, only ARG before the first FROM, ONBUILD triggers.
//!
//! | module | in → out |
//! |---|---|
//! | [`flags`] | flag words → typed flag values |
//! | [`commands`] | RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK |
//! | [`copy`] | COPY, ADD |
//! | [`meta`] | ENV, LABEL, ARG, EXPOSE, USER, WORKDIR, VOLUME, STOPSIGNAL, MAINTAINER, ONBUILD |
//! | [`stages`] | stages → scopes (ARG/ENV), `--target`, dependencies, cycles, unused build args |
//! | [`expand`] | an instruction + the variables in scope → the instruction with words expanded |

pub mod commands;
pub mod copy;
pub mod expand;
pub mod flags;
pub mod meta;
pub mod mounts;
pub mod stages;

use crate::dockerfile::{Heredoc, Node, ParseError, Warning, parse};

pub use commands::{Command, Healthcheck, Run};
pub use copy::CopyInst;
pub use meta::{ArgDef, KeyValue};

/// One instruction, typed. Words are kept as written; [`expand`] expands them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Run(Run),
    Cmd(Command),
    Entrypoint(Command),
    Shell(Vec<String>),
    Healthcheck(Healthcheck),
    Copy(CopyInst),
    Add(CopyInst),
    Env(Vec<KeyValue>),
    Label(Vec<KeyValue>),
    Arg(Vec<ArgDef>),
    Expose(Vec<String>),
    User(String),
    Workdir(String),
    Volume(Vec<String>),
    StopSignal(String),
    Maintainer(String),
    /// The trigger as written after `ONBUILD` (what goes into the image config).
    Onbuild(String),
}

/// An instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub instruction: Instruction,
    pub start_line: usize,
    pub end_line: usize,
    /// The logical line as written.
    pub original: String,
}

/// `FROM [--platform=P] base [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    pub base: String,
    pub name: Option<String>,
    pub platform: Option<String>,
}

/// One build stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub index: usize,
    pub from: From,
    pub from_line: usize,
    pub instructions: Vec<Located>,
}

impl Stage {
    /// The name, or the index as a string (`COPY --from=0`).
    pub fn display_name(&self) -> String {
        self.from
            .name
            .clone()
            .unwrap_or_else(|| self.index.to_string())
    }
}

/// A typed Dockerfile.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// ARGs before the first FROM (usable in FROM lines).
    pub meta_args: Vec<ArgDef>,
    pub stages: Vec<Stage>,
    pub warnings: Vec<Warning>,
    pub escape: char,
}

pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Parses and types a Dockerfile.
pub fn parse_dockerfile(text: &str) -> Result<Dockerfile, ParseError> {
    let parsed = parse(text)?;
    let mut df = Dockerfile {
        meta_args: Vec::new(),
        stages: Vec::new(),
        warnings: parsed.warnings,
        escape: parsed.directives.escape,
    };
    for node in &parsed.ast.children {
        let err = |m: String| ParseError::span(node.start_line, node.end_line, m);
        if node.value == "from" {
            let from = parse_from(node).map_err(err)?;
            if let Some(name) = &from.name
                && df.stages.iter().any(|s| s.from.name.as_ref() == Some(name))
            {
                return Err(err(format!("duplicate stage name {name:?}")));
            }
            df.stages.push(Stage {
                index: df.stages.len(),
                from,
                from_line: node.start_line,
                instructions: Vec::new(),
            });
            continue;
        }
        let instruction = parse_instruction(node, &mut df.warnings).map_err(err)?;
        let located = Located {
            instruction,
            start_line: node.start_line,
            end_line: node.end_line,
            original: node.original.clone(),
        };
        match df.stages.last_mut() {
            Some(stage) => stage.instructions.push(located),
            None => match located.instruction {
                Instruction::Arg(args) => df.meta_args.extend(args),
                _ => {
                    return Err(err(format!(
                        "no build stage in current context: {} must come after a FROM",
                        node.value.to_uppercase()
                    )));
                }
            },
        }
    }
    if df.stages.is_empty() {
        return Err(ParseError::at(
            parsed.ast.end_line.max(1),
            "the Dockerfile has no FROM instruction".into(),
        ));
    }
    Ok(df)
}

fn parse_from(node: &Node) -> Result<From, String> {
    let f = flags::Flags::parse(&node.flags, &[("platform", flags::Kind::String)])?;
    let words = node.words();
    let (base, name) = match words.as_slice() {
        [base] => (*base, None),
        [base, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
            (*base, Some(name.to_lowercase()))
        }
        _ => {
            return Err(
                "FROM requires either one or three arguments: FROM <image> [AS <name>]".into(),
            );
        }
    };
    if let Some(name) = &name {
        let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
            });
        if !valid {
            return Err(format!(
                "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
            ));
        }
    }
    Ok(From {
        base: base.to_owned(),
        name,
        platform: f.string("platform"),
    })
}

/// Types one instruction node (not FROM).
pub fn parse_instruction(node: &Node, warnings: &mut Vec<Warning>) -> Result<Instruction, String> {
    let warn = |warnings: &mut Vec<Warning>, m: &str| {
        warnings.push(Warning {
            line: node.start_line,
            message: m.to_owned(),
        })
    };
    match node.value.as_str() {
        "run" => commands::parse_run(node).map(Instruction::Run),
        "cmd" | "entrypoint" => {
            no_flags(node)?;
            let command = commands::command_of(node);
            if matches!(command, Command::Shell(_)) {
                warn(
                    warnings,
                    &format!(
                        "JSONArgsRecommended: JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                        node.value.to_uppercase()
                    ),
                );
            }
            Ok(if node.value == "cmd" {
                Instruction::Cmd(command)
            } else {
                Instruction::Entrypoint(command)
            })
        }
        "shell" => {
            no_flags(node)?;
            if !node.json {
                return Err("SHELL requires the arguments to be in JSON form".into());
            }
            let words: Vec<String> = node.words().into_iter().map(str::to_owned).collect();
            if words.is_empty() {
                return Err("SHELL requires at least one argument".into());
            }
            Ok(Instruction::Shell(words))
        }
        "healthcheck" => commands::parse_healthcheck(node).map(Instruction::Healthcheck),
        "copy" => copy::parse_copy(node, false).map(Instruction::Copy),
        "add" => copy::parse_copy(node, true).map(Instruction::Add),
        "maintainer" => {
            warn(
                warnings,
                "MaintainerDeprecated: the MAINTAINER instruction is deprecated, use a label instead to define an image author",
            );
            meta::parse_single(node).map(Instruction::Maintainer)
        }
        "onbuild" => meta::parse_onbuild(node).map(Instruction::Onbuild),
        "env" | "label" | "arg" | "expose" | "user" | "workdir" | "volume" | "stopsignal" => {
            let instruction = meta::parse_meta(node)?;
            let names: Vec<&str> = match &instruction {
                Instruction::Env(pairs) => pairs.iter().map(|p| p.key.as_str()).collect(),
                Instruction::Arg(defs) => defs.iter().map(|d| d.name.as_str()).collect(),
                _ => Vec::new(),
            };
            for name in names.into_iter().filter(|n| meta::looks_secret(n)) {
                warn(
                    warnings,
                    &format!(
                        "SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data ({} {name:?}): their values stay in the image's config and history; use RUN --mount=type=secret",
                        node.value.to_uppercase()
                    ),
                );
            }
            Ok(instruction)
        }
        other => Err(unknown_instruction(&node.original, other)),
    }
}

pub(crate) fn no_flags(node: &Node) -> Result<(), String> {
    flags::Flags::parse(&node.flags, &[]).map(|_| ())
}

/// `unknown instruction: RUNN (did you mean RUN?)`.
fn unknown_instruction(original: &str, keyword: &str) -> String {
    let written = original.split_whitespace().next().unwrap_or(keyword);
    let upper = keyword.to_uppercase();
    let best = KEYWORDS.iter().map(|k| (levenshtein(&upper, k), *k)).min();
    match best {
        Some((d, k)) if d <= 2.max(upper.len() / 3) && d < upper.len() => {
            format!("unknown instruction: {written} (did you mean {k}?)")
        }
        _ => format!("unknown instruction: {written}"),
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The heredocs of a node, for instructions that carry them.
pub(crate) fn heredocs(node: &Node) -> Vec<Heredoc> {
    node.heredocs.clone()
}
