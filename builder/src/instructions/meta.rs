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

/// Whether an ARG or ENV name looks like it holds a secret (BuildKit's
/// `SecretsUsedInArgOrEnv`): one of its `_`-separated words, in any case, is a secret word,
/// and none is `public`.
pub fn looks_secret(name: &str) -> bool {
    const WORDS: [&str; 10] = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    let words: Vec<String> = name.split('_').map(str::to_ascii_lowercase).collect();
    words.iter().any(|w| WORDS.contains(&w.as_str())) && !words.iter().any(|w| w == "public")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_names_are_whole_words() {
        for name in [
            "PASSWORD",
            "db_password",
            "AWS_SECRET_ACCESS_KEY",
            "GITHUB_TOKEN",
            "npm_Auth",
            "apikey",
            "SSH_KEY_",
            "Credentials",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in [
            "MONKEY",
            "PASSWORDS_DIR",
            "TOKENIZER",
            "KEYBOARD",
            "PUBLIC_KEY",
            "public_token",
            "VERSION",
            "",
        ] {
            assert!(!looks_secret(name), "{name}");
        }
    }

    #[test]
    fn arg_and_env_with_secret_names_warn_at_their_line() {
        let df = crate::instructions::parse_dockerfile(
            "ARG NPM_TOKEN\nFROM scratch\nENV A=1 DB_PASSWORD=x\nARG PUBLIC_KEY VERSION\nLABEL token=1\n",
        )
        .unwrap();
        let found: Vec<(usize, &str)> = df
            .warnings
            .iter()
            .filter(|w| w.message.starts_with("SecretsUsedInArgOrEnv"))
            .map(|w| (w.line, w.message.as_str()))
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, 1);
        assert!(found[0].1.contains("(ARG \"NPM_TOKEN\")"), "{}", found[0].1);
        assert_eq!(found[1].0, 3);
        assert!(
            found[1].1.contains("(ENV \"DB_PASSWORD\")"),
            "{}",
            found[1].1
        );
    }
}
