//! Why a step's cache key missed: the step's inputs against those of an earlier build of the
//! same step (a record with the same parent key, else one at the same place in the same
//! stage), input by input, in the order a user looks for the cause: the instruction, the
//! base image, what `--from` names, the git commit, the context files, the build args and
//! environment, then user, working directory, shell, mounts and platform.

use berth_oci::Digest;

use super::Inputs;

/// An earlier build of a step, as a cache record describes it.
#[derive(Debug, Clone)]
pub struct Earlier {
    pub parent: Option<Digest>,
    pub site: String,
    pub inputs: Option<Inputs>,
}

/// How closely an earlier record matches the step that missed: the higher the better (`None`:
/// not an earlier build of it). The same parent and place first; then the same parent in the
/// same stage (the instruction was edited); then the same place on another parent.
pub fn closeness(step_parent: &Digest, step_site: &str, e: &Earlier) -> Option<u8> {
    let stage = |site: &str| site.split('\0').next().unwrap_or_default().to_owned();
    let same_parent = e.parent.as_ref() == Some(step_parent);
    match (
        same_parent,
        e.site == step_site,
        stage(&e.site) == stage(step_site),
    ) {
        (true, true, _) => Some(3),
        (true, false, true) => Some(2),
        (false, true, _) => Some(1),
        _ => None,
    }
}

/// How many changed files a reason names before "and N more".
const NAMED_FILES: usize = 3;

/// Why the step with `inputs` (chained on `parent`) missed, given the closest earlier build
/// of it (`None`: there is none in any cache).
pub fn explain(parent: &Digest, inputs: &Inputs, earlier: Option<&Earlier>) -> String {
    let Some(earlier) = earlier else {
        return "no earlier build of this step is in the cache".into();
    };
    let Some(before) = &earlier.inputs else {
        return match earlier.parent.as_ref() == Some(parent) {
            true => "an input of this step changed (the cache does not say which)".into(),
            false => "a step before it changed".into(),
        };
    };
    let get = |m: &Inputs, k: &str| m.get(k).cloned();
    let changed = |k: &str| get(inputs, k) != get(before, k);
    if changed("instruction") {
        return match get(before, "instruction") {
            Some(b) => format!("the instruction changed (was `{b}`)"),
            None => "the instruction changed".into(),
        };
    }
    if changed("base") {
        return format!(
            "the base image changed: {} (was {})",
            get(inputs, "base").unwrap_or_default(),
            get(before, "base").unwrap_or_default()
        );
    }
    if changed("from") {
        let name = get(inputs, "from")
            .and_then(|f| f.split_once(' ').map(|(n, _)| n.to_owned()))
            .unwrap_or_default();
        return format!("what --from={name} copies from changed");
    }
    if changed("git") {
        return format!(
            "the git source is at another commit: {} (was {})",
            get(inputs, "git").unwrap_or_default(),
            get(before, "git").unwrap_or_default()
        );
    }
    if let Some(files) = files_changed(inputs, before) {
        return files;
    }
    for (prefix, what) in [("arg ", "build arg"), ("env ", "ENV")] {
        let names: std::collections::BTreeSet<&str> = inputs
            .keys()
            .chain(before.keys())
            .filter_map(|k| k.strip_prefix(prefix))
            .collect();
        for name in names {
            let key = format!("{prefix}{name}");
            match (inputs.get(&key), before.get(&key)) {
                (Some(a), Some(b)) if a != b => return format!("{what} {name} changed"),
                (Some(_), None) => return format!("{what} {name} is new"),
                (None, Some(_)) => return format!("{what} {name} is gone"),
                _ => {}
            }
        }
    }
    for (k, what) in [
        ("user", "USER"),
        ("workdir", "WORKDIR"),
        ("shell", "SHELL"),
        ("platform", "the platform"),
    ] {
        if changed(k) {
            return format!(
                "{what} changed: {:?} (was {:?})",
                get(inputs, k).unwrap_or_default(),
                get(before, k).unwrap_or_default()
            );
        }
    }
    if changed("mounts") {
        return "what its bind mounts show changed".into();
    }
    if changed("expanded") {
        return "the instruction's expanded values changed".into();
    }
    match earlier.parent.as_ref() == Some(parent) {
        true => "the cache holds this step made with other options (--timestamp, or another berth)"
            .into(),
        false => "a step before it changed".into(),
    }
}

/// The context files that differ, named (a few) and counted.
fn files_changed(now: &Inputs, before: &Inputs) -> Option<String> {
    if now.get("files") != before.get("files") {
        return Some("the context files it copies changed".into());
    }
    let files = |m: &Inputs| -> std::collections::BTreeMap<String, String> {
        m.iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("file ")?.to_owned(), v.clone())))
            .collect()
    };
    let (a, b) = (files(now), files(before));
    let mut changes = Vec::new();
    for (path, d) in &a {
        match b.get(path) {
            None => changes.push(format!("{path} (new)")),
            Some(old) if old != d => changes.push(path.clone()),
            _ => {}
        }
    }
    changes.extend(
        b.keys()
            .filter(|p| !a.contains_key(*p))
            .map(|p| format!("{p} (removed)")),
    );
    if changes.is_empty() {
        return None;
    }
    let n = changes.len();
    let mut text = format!(
        "context file{} changed: {}",
        if n == 1 { "" } else { "s" },
        changes[..n.min(NAMED_FILES)].join(", ")
    );
    if n > NAMED_FILES {
        text.push_str(&format!(" and {} more", n - NAMED_FILES));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, &str)]) -> Inputs {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn earlier(parent: &Digest, pairs: &[(&str, &str)]) -> Earlier {
        Earlier {
            parent: Some(parent.clone()),
            site: "s".into(),
            inputs: Some(inputs(pairs)),
        }
    }

    #[test]
    fn each_kind_of_change_is_named() {
        let p = Digest::of(b"p");
        let base = [
            ("instruction", "COPY . /app"),
            ("base", "busybox@sha256:1"),
            ("file a.txt", "1"),
            ("file b.txt", "2"),
            ("arg V", "x"),
            ("user", ""),
        ];
        let why = |now: &[(&str, &str)]| explain(&p, &inputs(now), Some(&earlier(&p, &base)));
        let mut now = base.to_vec();
        now[2] = ("file a.txt", "9");
        assert_eq!(why(&now), "context file changed: a.txt");
        now.push(("file c.txt", "3"));
        now.retain(|(k, _)| *k != "file b.txt");
        assert_eq!(
            why(&now),
            "context files changed: a.txt, c.txt (new), b.txt (removed)"
        );
        let mut now = base.to_vec();
        now[4] = ("arg V", "y");
        assert_eq!(why(&now), "build arg V changed");
        now[0] = ("instruction", "COPY . /src");
        assert_eq!(why(&now), "the instruction changed (was `COPY . /app`)");
        let mut now = base.to_vec();
        now[1] = ("base", "busybox@sha256:2");
        assert_eq!(
            why(&now),
            "the base image changed: busybox@sha256:2 (was busybox@sha256:1)"
        );
        let mut now = base.to_vec();
        now[5] = ("user", "app");
        assert_eq!(why(&now), "USER changed: \"app\" (was \"\")");
    }

    #[test]
    fn many_files_are_counted_and_no_earlier_build_is_said() {
        let p = Digest::of(b"p");
        let before: Vec<(String, String)> =
            (0..6).map(|i| (format!("file f{i}"), "1".into())).collect();
        let now: Vec<(String, String)> =
            (0..6).map(|i| (format!("file f{i}"), "2".into())).collect();
        let e = Earlier {
            parent: Some(p.clone()),
            site: String::new(),
            inputs: Some(before.into_iter().collect()),
        };
        assert_eq!(
            explain(&p, &now.into_iter().collect(), Some(&e)),
            "context files changed: f0, f1, f2 and 3 more"
        );
        assert_eq!(
            explain(&p, &Inputs::new(), None),
            "no earlier build of this step is in the cache"
        );
    }

    #[test]
    fn the_same_inputs_on_another_parent_mean_an_earlier_step_changed() {
        let p = Digest::of(b"p");
        let same = [("instruction", "RUN x")];
        let e = earlier(&Digest::of(b"other"), &same);
        assert_eq!(
            explain(&p, &inputs(&same), Some(&e)),
            "a step before it changed"
        );
        assert_eq!(closeness(&p, "s", &e), Some(1));
        assert_eq!(closeness(&p, "t", &e), None);
        // A sibling on the same parent counts only in the same stage.
        let sibling = |site: &str| Earlier {
            parent: Some(p.clone()),
            site: site.into(),
            inputs: None,
        };
        assert_eq!(
            closeness(&p, "build\0COPY a /", &sibling("build\0COPY b /")),
            Some(2)
        );
        assert_eq!(
            closeness(&p, "build\0COPY a /", &sibling("1\0COPY a /")),
            None
        );
    }
}
