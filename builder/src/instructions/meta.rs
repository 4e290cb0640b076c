//! The instructions that change only the image config: ENV, LABEL, ARG, EXPOSE, USER,
//! WORKDIR, VOLUME, STOPSIGNAL, MAINTAINER, and ONBUILD triggers.

use super::{Instruction, no_flags};
use crate::dockerfile::Node;

/// `key=value` (ENV, LABEL), value as written (quotes are removed by expansion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDef {
    pub name: String,
    pub default: Option<String>,
}

/// Key/value triplets (key, value, separator) of ENV and LABEL nodes.
fn pairs(node: &Node, keyword: &str) -> Result<Vec<KeyValue>, String> {
    let words = node.words();
    if words.is_empty() {
        return Err(format!("{keyword} requires at least one argument"));
    }
    Ok(words
        .chunks(3)
        .map(|c| KeyValue {
            key: c[0].to_owned(),
            value: c.get(1).copied().unwrap_or("").to_owned(),
        })
        .collect())
}

pub fn parse_single(node: &Node) -> Result<String, String> {
    no_flags(node)?;
    match node.words().as_slice() {
        [one] => Ok((*one).to_owned()),
        _ => Err(format!(
            "{} requires exactly one argument",
            node.value.to_uppercase()
        )),
    }
}

pub fn parse_meta(node: &Node) -> Result<Instruction, String> {
    no_flags(node)?;
    let words: Vec<String> = node.words().into_iter().map(str::to_owned).collect();
    let keyword = node.value.to_uppercase();
    Ok(match node.value.as_str() {
        "env" => Instruction::Env(pairs(node, &keyword)?),
        "label" => Instruction::Label(pairs(node, &keyword)?),
        "arg" => {
            if words.is_empty() {
                return Err("ARG requires at least one argument".into());
            }
            let mut args = Vec::new();
            for w in words {
                let (name, default) = match w.split_once('=') {
                    Some((n, d)) => (n.to_owned(), Some(d.to_owned())),
                    None => (w, None),
                };
                if name.is_empty() {
                    return Err("ARG names can not be blank".into());
                }
                args.push(ArgDef { name, default });
            }
            Instruction::Arg(args)
        }
        "expose" => {
            if words.is_empty() {
                return Err("EXPOSE requires at least one argument".into());
            }
            Instruction::Expose(words)
        }
        "volume" => {
            if words.is_empty() || words.iter().any(|w| w.trim().is_empty()) {
                return Err("VOLUME specified can not be an empty string".into());
            }
            Instruction::Volume(words)
        }
        "user" => Instruction::User(parse_single(node)?),
        "workdir" => Instruction::Workdir(parse_single(node)?),
        "stopsignal" => Instruction::StopSignal(parse_single(node)?),
        other => return Err(format!("not a config instruction: {other}")),
    })
}

/// The trigger text after `ONBUILD`, checked: it must itself be a valid instruction and not
/// FROM, ONBUILD or MAINTAINER.
pub fn parse_onbuild(node: &Node) -> Result<String, String> {
    no_flags(node)?;
    let Some(child) = node.next.as_deref().and_then(|n| n.children.first()) else {
        return Err("ONBUILD requires at least one argument".into());
    };
    check_trigger(child)?;
    let trimmed = node.original.trim_start();
    let after = trimmed.get("ONBUILD".len()..).unwrap_or("").trim();
    Ok(after.to_owned())
}

/// Whether a trigger may be an ONBUILD trigger (and is a valid instruction).
pub fn check_trigger(child: &Node) -> Result<(), String> {
    match child.value.as_str() {
        "onbuild" => return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
        "from" => return Err("FROM isn't allowed as an ONBUILD trigger".into()),
        "maintainer" => return Err("MAINTAINER isn't allowed as an ONBUILD trigger".into()),
        _ => {}
    }
    super::parse_instruction(child, &mut Vec::new()).map(|_| ())
}
