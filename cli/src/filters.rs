//! Docker's `--filter key=value` for listing commands: several values of one key are ORed,
//! different keys ANDed; an unknown key is a usage error that names the known ones.

use std::collections::BTreeMap;

use crate::UsageError;

/// The filters given, by key.
#[derive(Debug, Default)]
pub struct Filters {
    by_key: BTreeMap<String, Vec<String>>,
}

impl Filters {
    /// Parses each `key=value`; `known` are the keys this command takes.
    pub fn parse(given: &[String], known: &[&str]) -> Result<Filters, UsageError> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in given {
            let Some((key, value)) = f.split_once('=') else {
                return Err(UsageError(format!(
                    "bad filter {f:?}: use key=value (keys: {})",
                    known.join(", ")
                )));
            };
            let key = key.trim().to_ascii_lowercase();
            if !known.contains(&key.as_str()) {
                return Err(UsageError(format!(
                    "invalid filter {key:?}: the known filters are {}",
                    known.join(", ")
                )));
            }
            by_key.entry(key).or_default().push(value.to_owned());
        }
        Ok(Filters { by_key })
    }

    /// The values given for `key` (empty when it was not given).
    pub fn values(&self, key: &str) -> &[String] {
        self.by_key.get(key).map_or(&[], Vec::as_slice)
    }

    /// True when `key` was not given, or `matches` holds for one of its values.
    pub fn any(&self, key: &str, mut matches: impl FnMut(&str) -> bool) -> bool {
        let values = self.values(key);
        values.is_empty() || values.iter().any(|v| matches(v))
    }

    /// A `true`/`false` filter's value, checked.
    pub fn bool_values(&self, key: &str) -> Result<Vec<bool>, UsageError> {
        self.values(key)
            .iter()
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(UsageError(format!(
                    "invalid filter {key}={v:?}: use true or false"
                ))),
            })
            .collect()
    }
}

/// `label=KEY` (the key is present) or `label=KEY=VALUE` against a label map.
pub fn label_matches(filter: &str, labels: &BTreeMap<String, String>) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(filter),
    }
}

/// Go's `path.Match` as Docker's `reference` filter uses it: `*` is any run of characters
/// but `/`, `?` one character but `/`, `[...]` a class (`[!...]` or `[^...]` negated,
/// `a-z` ranges), `\` quotes the next character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, chars used including ']').
        let mut i = 0;
        let negate = matches!(p.first(), Some('!' | '^'));
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        while i < p.len() {
            if p[i] == ']' && !first {
                return Some((matched != negate, i + 1));
            }
            first = false;
            let lo = p[i];
            if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                if lo <= c && c <= p[i + 2] {
                    matched = true;
                }
                i += 3;
            } else {
                if lo == c {
                    matched = true;
                }
                i += 1;
            }
        }
        None
    }
    fn go(p: &[char], n: &[char], budget: &mut u32) -> bool {
        *budget = budget.saturating_sub(1);
        if *budget == 0 {
            return false;
        }
        match p.first() {
            None => n.is_empty(),
            Some('*') => {
                let rest = &p[1..];
                for k in 0..=n.len() {
                    if go(rest, &n[k..], budget) {
                        return true;
                    }
                    if k < n.len() && n[k] == '/' {
                        break;
                    }
                }
                false
            }
            Some('?') => !n.is_empty() && n[0] != '/' && go(&p[1..], &n[1..], budget),
            Some('[') => match (n.first(), class(&p[1..], *n.first().unwrap_or(&'\0'))) {
                (Some(&c), Some((true, used))) if c != '/' => go(&p[1 + used..], &n[1..], budget),
                _ => false,
            },
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..], budget),
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..], budget),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Patterns are user input and names come from images: the backtracking is bounded.
    let mut budget = 1_000_000;
    go(&p, &n, &mut budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_values_grouped() {
        let f = Filters::parse(
            &["label=a".into(), "label=b=c".into(), "dangling=true".into()],
            &["label", "dangling"],
        )
        .unwrap();
        assert_eq!(f.values("label"), ["a", "b=c"]);
        assert_eq!(f.bool_values("dangling").unwrap(), [true]);
        assert!(f.any("reference", |_| false), "absent key matches");
        let e = Filters::parse(&["colour=red".into()], &["label", "dangling"]).unwrap_err();
        assert!(e.0.contains("label, dangling"), "{e}");
        assert!(Filters::parse(&["label".into()], &["label"]).is_err());
    }

    #[test]
    fn globs_like_go_path_match() {
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("busybox:*", "busybox:latest"));
        assert!(!glob_match("busy*", "library/busybox"));
        assert!(glob_match("*/busybox", "library/busybox"));
        assert!(glob_match("b?sybox", "busybox"));
        assert!(glob_match("[a-c]usybox", "busybox"));
        assert!(!glob_match("[!b]usybox", "busybox"));
        assert!(!glob_match("busy", "busybox"));
        let long = "a".repeat(200);
        assert!(!glob_match(&"*a".repeat(40), &(long + "b")));
    }

    #[test]
    fn labels() {
        let mut l = BTreeMap::new();
        l.insert("k".to_owned(), "v".to_owned());
        assert!(label_matches("k", &l));
        assert!(label_matches("k=v", &l));
        assert!(!label_matches("k=w", &l));
        assert!(!label_matches("j", &l));
    }
}
