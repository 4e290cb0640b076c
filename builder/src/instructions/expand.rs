//! Word expansion per instruction (the Dockerfile reference's list): ADD, COPY, ENV, EXPOSE,
//! FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR (and ONBUILD triggers of those, when they
//! run) are expanded by the builder; RUN, CMD, ENTRYPOINT and SHELL are left to the shell.
//! Every word of one instruction sees the same variables (`ENV a=1 b=$a` uses the old `a`).

use std::collections::HashMap;

use super::{ArgDef, CopyInst, Instruction, KeyValue};
use crate::dockerfile::shell::{Lex, ShellError};

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
        other => other.clone(),
    })
}
