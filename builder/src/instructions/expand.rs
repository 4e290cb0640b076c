//! Word expansion per instruction (the Dockerfile reference's list): ADD, COPY, ENV, EXPOSE,
//! FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR (and ONBUILD triggers of those, when they
//! run) and the values of RUN's `--mount`s are expanded by the builder; RUN's command, CMD,
//! ENTRYPOINT and SHELL are left to the shell.
//! Every word of one instruction sees the same variables (`ENV a=1 b=$a` uses the old `a`).

use std::collections::HashMap;

use super::mounts::MountSpec;
use super::{ArgDef, CopyInst, Instruction, KeyValue};
use crate::dockerfile::Heredoc;
use crate::dockerfile::shell::{Lex, ShellError};

/// The body of a COPY or ADD heredoc: with an unquoted delimiter, variables and escapes are
/// processed and quotes are text (BuildKit's raw expansion, always with `\` as the escape);
/// with a quoted one, the body is kept as written.
fn expand_heredoc(h: &Heredoc, vars: &HashMap<String, String>) -> Result<Heredoc, ShellError> {
    if !h.expand {
        return Ok(h.clone());
    }
    let lex = Lex {
        skip_process_quotes: true,
        ..Lex::new('\\')
    };
    Ok(Heredoc {
        content: lex.process_word(&h.content, vars)?,
        ..h.clone()
    })
}

/// A `RUN --mount` with variables in its values (`from=$STAGE`, `target=${DIR}`): each
/// value expanded with the step's variables, as BuildKit expands them, and the spec read
/// again. The expanded spec is the one the cache key holds.
fn expand_mount(
    m: &MountSpec,
    lex: &Lex,
    vars: &HashMap<String, String>,
) -> Result<MountSpec, ShellError> {
    if !m.spec.contains('$') {
        return Ok(m.clone());
    }
    let fields = m
        .spec
        .split(',')
        .map(|part| match part.split_once('=') {
            Some((k, v)) => Ok(format!("{k}={}", lex.process_word(v, vars)?)),
            None => Ok(part.to_owned()),
        })
        .collect::<Result<Vec<_>, ShellError>>()?;
    MountSpec::parse(&fields.join(",")).map_err(|reason| ShellError {
        word: m.spec.clone(),
        reason,
    })
}

/// Expands the words of `inst` that the builder expands.
pub fn expand(
    inst: &Instruction,
    lex: &Lex,
    vars: &HashMap<String, String>,
) -> Result<Instruction, ShellError> {
    let w = |s: &String| lex.process_word(s, vars);
    let opt = |s: &Option<String>| s.as_ref().map(|v| lex.process_word(v, vars)).transpose();
    let list = |v: &Vec<String>| {
        v.iter()
            .map(|s| lex.process_word(s, vars))
            .collect::<Result<Vec<_>, _>>()
    };
    let kv = |v: &Vec<KeyValue>| {
        v.iter()
            .map(|p| {
                Ok(KeyValue {
                    key: w(&p.key)?,
                    value: w(&p.value)?,
                })
            })
            .collect::<Result<Vec<_>, ShellError>>()
    };
    Ok(match inst {
        Instruction::Copy(c) | Instruction::Add(c) => {
            let expanded = CopyInst {
                sources: list(&c.sources)?,
                dest: w(&c.dest)?,
                from: opt(&c.from)?,
                chown: opt(&c.chown)?,
                chmod: opt(&c.chmod)?,
                exclude: list(&c.exclude)?,
                checksum: opt(&c.checksum)?,
                heredocs: c
                    .heredocs
                    .iter()
                    .map(|h| expand_heredoc(h, vars))
                    .collect::<Result<_, _>>()?,
                ..c.clone()
            };
            if matches!(inst, Instruction::Copy(_)) {
                Instruction::Copy(expanded)
            } else {
                Instruction::Add(expanded)
            }
        }
        Instruction::Env(p) => Instruction::Env(kv(p)?),
        Instruction::Label(p) => Instruction::Label(kv(p)?),
        Instruction::Arg(a) => Instruction::Arg(
            a.iter()
                .map(|d| {
                    Ok(ArgDef {
                        name: d.name.clone(),
                        default: opt(&d.default)?,
                    })
                })
                .collect::<Result<_, ShellError>>()?,
        ),
        Instruction::Expose(p) => Instruction::Expose(list(p)?),
        Instruction::Volume(v) => Instruction::Volume(list(v)?),
        Instruction::User(u) => Instruction::User(w(u)?),
        Instruction::Workdir(d) => Instruction::Workdir(w(d)?),
        Instruction::StopSignal(s) => Instruction::StopSignal(w(s)?),
        Instruction::Run(r) => Instruction::Run(super::Run {
            mounts: r
                .mounts
                .iter()
                .map(|m| expand_mount(m, lex, vars))
                .collect::<Result<_, _>>()?,
            ..r.clone()
        }),
        other => other.clone(),
    })
}
