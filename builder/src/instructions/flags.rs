//! Instruction flags (`--name=value`, `--name` for booleans): the flag words the parser kept
//! and the flags an instruction accepts in, typed values out, with BuildKit's errors
//! (unknown flag, duplicate flag, missing value, not a boolean).

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Bool,
    /// May be given several times.
    List,
}

/// Parsed flag values.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    strings: HashMap<&'static str, String>,
    bools: HashMap<&'static str, bool>,
    lists: HashMap<&'static str, Vec<String>>,
}

impl Flags {
    pub fn parse(words: &[String], allowed: &[(&'static str, Kind)]) -> Result<Flags, String> {
        let mut out = Flags::default();
        for word in words {
            let body = word
                .strip_prefix("--")
                .ok_or_else(|| format!("invalid flag {word:?}: flags start with --"))?;
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(key, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
                return Err(format!("unknown flag: --{name}"));
            };
            match kind {
                Kind::String => {
                    let Some(v) = value else {
                        return Err(format!("missing a value on flag: --{name}"));
                    };
                    if out.strings.insert(key, v.to_owned()).is_some() {
                        return Err(format!("duplicate flag specified: --{name}"));
                    }
                }
                Kind::Bool => {
                    let v = match value.map(|v| v.to_ascii_lowercase()) {
                        None => true,
                        Some(v) if v == "true" => true,
                        Some(v) if v == "false" => false,
                        Some(v) => {
                            return Err(format!(
                                "expecting boolean value for flag --{name}, not: {v}"
                            ));
                        }
                    };
                    if out.bools.insert(key, v).is_some() {
                        return Err(format!("duplicate flag specified: --{name}"));
                    }
                }
                Kind::List => {
                    let Some(v) = value else {
                        return Err(format!("missing a value on flag: --{name}"));
                    };
                    out.lists.entry(key).or_default().push(v.to_owned());
                }
            }
        }
        Ok(out)
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.strings.get(name).cloned()
    }

    pub fn bool(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }

    pub fn list(&self, name: &str) -> Vec<String> {
        self.lists.get(name).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn typed_flags_and_errors() {
        let allowed = [
            ("from", Kind::String),
            ("link", Kind::Bool),
            ("exclude", Kind::List),
        ];
        let f = Flags::parse(
            &words(&["--from=a", "--link", "--exclude=x", "--exclude=y"]),
            &allowed,
        )
        .unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert!(f.bool("link"));
        assert_eq!(f.list("exclude"), ["x", "y"]);
        assert!(
            !Flags::parse(&words(&["--link=false"]), &allowed)
                .unwrap()
                .bool("link")
        );
        assert_eq!(
            Flags::parse(&words(&["--nope"]), &allowed).unwrap_err(),
            "unknown flag: --nope"
        );
        assert!(
            Flags::parse(&words(&["--from"]), &allowed)
                .unwrap_err()
                .contains("missing a value")
        );
        assert!(
            Flags::parse(&words(&["--from=a", "--from=b"]), &allowed)
                .unwrap_err()
                .contains("duplicate")
        );
        assert!(
            Flags::parse(&words(&["--link=maybe"]), &allowed)
                .unwrap_err()
                .contains("boolean")
        );
    }
}
