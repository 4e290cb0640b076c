//! A crate's source files → its module tree and every path one module writes to another.
//! Modules are found by following `mod name;` from the crate root (`lib.rs`, `main.rs`, each
//! `bin/*.rs`) as rustc does, and `mod name { … }` within a file. References are the paths
//! of `use` declarations (use-groups expanded) and the `crate::`, `super::` and `self::` paths
//! in code; a bare path names a child module or another crate, never a sibling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::lex::{self, Token};

/// A module's path from the crate root: `[]` is the root, `["sys", "linux"]` is `sys::linux`.
pub type ModPath = Vec<String>;

/// A path written in module `from`, as written (`crate::sys::Sys`, `super::init::run`).
#[derive(Debug, Clone)]
pub struct Reference {
    pub from: ModPath,
    pub path: Vec<String>,
    pub file: String,
    pub line: usize,
}

/// A name a `use` declaration brings into a module's scope, kept to follow re-exports:
/// `crate::Name` where the root has `pub use rootfs::Name` is a reference to `rootfs`.
#[derive(Debug, Clone)]
struct Binding {
    path: Vec<String>,
}

/// One crate: its modules (each with the file it is in) and the references between them.
#[derive(Debug, Default)]
pub struct Crate {
    pub modules: BTreeMap<ModPath, String>,
    bindings: BTreeMap<ModPath, BTreeMap<String, Binding>>,
    pub references: Vec<Reference>,
}

/// What one file says: the modules it declares or opens, and the paths it writes.
#[derive(Debug, Default)]
struct FileItems {
    /// `mod name;`: (the module it is declared in, the name).
    pub declared: Vec<(ModPath, String)>,
    /// `mod name { … }`.
    pub inline: Vec<ModPath>,
    pub references: Vec<Reference>,
    /// Names bound by module-level `use` declarations: (module, name, path).
    bindings: Vec<(ModPath, String, Vec<String>)>,
}

/// Reads the crate whose root file is `root`; `display_base` is cut from file names in
/// references.
pub fn load(root: &Path, display_base: &Path) -> Crate {
    let mut krate = Crate::default();
    let mut queue = vec![(root.to_path_buf(), ModPath::new(), true)];
    while let Some((file, module, owns_dir)) = queue.pop() {
        let shown = file
            .strip_prefix(display_base)
            .unwrap_or(&file)
            .display()
            .to_string();
        let source = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let declared = krate.add(&source, &module, &shown);
        // A file's child modules live in its own directory (`lib.rs`, `main.rs`, `mod.rs`)
        // or in the directory named after it (`sys.rs` → `sys/`).
        let dir = if owns_dir {
            file.parent().unwrap().to_path_buf()
        } else {
            file.with_extension("")
        };
        for (parent, name) in declared {
            let mut child_dir: PathBuf = dir.clone();
            child_dir.extend(&parent[module.len()..]);
            let mut child = parent.clone();
            child.push(name.clone());
            let flat = child_dir.join(format!("{name}.rs"));
            let nested = child_dir.join(&name).join("mod.rs");
            if flat.is_file() {
                queue.push((flat, child, false));
            } else if nested.is_file() {
                queue.push((nested, child, true));
            } else {
                panic!("{shown}: no file for `mod {name};`");
            }
        }
    }
    krate
}

impl Crate {
    /// Adds the file `shown` whose module is `module`: the modules it opens, the names it
    /// binds, the paths it writes. Returns its `mod name;` declarations (the module each is
    /// declared in, the name) for the caller to find their files.
    pub fn add(&mut self, source: &str, module: &ModPath, shown: &str) -> Vec<(ModPath, String)> {
        let items = parse(source, module, shown);
        self.modules.insert(module.clone(), shown.to_owned());
        for inline in items.inline {
            self.modules.insert(inline, shown.to_owned());
        }
        for (module, name, path) in items.bindings {
            self.bindings
                .entry(module)
                .or_default()
                .insert(name, Binding { path });
        }
        self.references.extend(items.references);
        items.declared
    }
}

/// Reads one file whose module is `module`.
fn parse(source: &str, module: &ModPath, file: &str) -> FileItems {
    let tokens = lex::tokens(&lex::blank(source));
    let mut items = FileItems::default();
    // One entry per open brace: the inline module it opens, if it opens one.
    let mut braces: Vec<Option<String>> = Vec::new();
    let current = |braces: &[Option<String>]| -> ModPath {
        let mut m = module.clone();
        m.extend(braces.iter().flatten().cloned());
        m
    };
    let text = |i: usize| tokens.get(i).map_or("", |t: &Token| t.text.as_str());
    let mut i = 0;
    while i < tokens.len() {
        match text(i) {
            "mod" if is_ident(text(i + 1)) && matches!(text(i + 2), "{" | ";") => {
                let name = text(i + 1).to_owned();
                if text(i + 2) == "{" {
                    let mut inline = current(&braces);
                    inline.push(name.clone());
                    items.inline.push(inline);
                    braces.push(Some(name));
                } else {
                    items.declared.push((current(&braces), name));
                }
                i += 3;
            }
            "use" => {
                let from = current(&braces);
                let at_module_level = braces.iter().all(Option::is_some);
                let mut leaves = Vec::new();
                i += 1;
                use_tree(&tokens, &mut i, Vec::new(), &mut leaves);
                for (path, alias, line) in leaves {
                    if at_module_level && let Some(name) = alias.or_else(|| path.last().cloned()) {
                        if name != "*" && name != "_" {
                            items.bindings.push((from.clone(), name, path.clone()));
                        }
                    }
                    items.references.push(Reference {
                        from: from.clone(),
                        path,
                        file: file.to_owned(),
                        line,
                    });
                }
            }
            "{" => {
                braces.push(None);
                i += 1;
            }
            "}" => {
                braces.pop();
                i += 1;
            }
            "crate" | "super" | "self"
                if text(i + 1) == "::" && text(i.wrapping_sub(1)) != "::" =>
            {
                let line = tokens[i].line;
                let mut path = vec![text(i).to_owned()];
                i += 1;
                while text(i) == "::" && is_ident(text(i + 1)) {
                    path.push(text(i + 1).to_owned());
                    i += 2;
                }
                items.references.push(Reference {
                    from: current(&braces),
                    path,
                    file: file.to_owned(),
                    line,
                });
            }
            _ => i += 1,
        }
    }
    items
}

/// Reads a use tree at `*i` (past `use`, or inside a group), appending one leaf per path it
/// names: the full path, its `as` name, and the line of its last segment. A trailing `self`
/// (`use a::{self, b}`) names the prefix itself.
fn use_tree(
    tokens: &[Token],
    i: &mut usize,
    prefix: Vec<String>,
    leaves: &mut Vec<(Vec<String>, Option<String>, usize)>,
) {
    let text = |i: usize| tokens.get(i).map_or("", |t| t.text.as_str());
    let mut path = prefix;
    loop {
        match text(*i) {
            "::" => *i += 1,
            "{" => {
                *i += 1;
                while !matches!(text(*i), "}" | "" | ";") {
                    let before = *i;
                    use_tree(tokens, i, path.clone(), leaves);
                    if text(*i) == "," {
                        *i += 1;
                    }
                    if *i == before {
                        *i += 1;
                    }
                }
                if text(*i) == "}" {
                    *i += 1;
                }
                break;
            }
            "*" => {
                path.push("*".to_owned());
                leaves.push((path, None, tokens[*i].line));
                *i += 1;
                break;
            }
            word if is_ident(word) => {
                let line = tokens[*i].line;
                if word != "self" || path.is_empty() {
                    path.push(word.to_owned());
                }
                *i += 1;
                if text(*i) == "::" {
                    continue;
                }
                let mut alias = None;
                if text(*i) == "as" {
                    alias = Some(text(*i + 1).to_owned());
                    *i += 2;
                }
                leaves.push((path, alias, line));
                break;
            }
            _ => break,
        }
    }
    if text(*i) == ";" {
        *i += 1;
    }
}

fn is_ident(text: &str) -> bool {
    text.starts_with(|c: char| c.is_alphabetic() || c == '_')
}

impl Crate {
    /// The module a path written in `from` names, and what follows it (an item, or nothing):
    /// `crate::sys::Sys` from anywhere → (`sys`, `[Sys]`). None for a path into another crate.
    pub fn resolve(&self, from: &ModPath, path: &[String]) -> Option<(ModPath, Vec<String>)> {
        let (mut base, mut k) = match path.first()?.as_str() {
            "crate" => (ModPath::new(), 1),
            "self" => (from.clone(), 1),
            "super" => (from[..from.len().saturating_sub(1)].to_vec(), 1),
            first => {
                let mut child = from.clone();
                child.push(first.to_owned());
                if !self.modules.contains_key(&child) {
                    return None;
                }
                (from.clone(), 0)
            }
        };
        while path.get(k).is_some_and(|s| s == "super") {
            base.pop();
            k += 1;
        }
        while let Some(segment) = path.get(k) {
            let mut child = base.clone();
            child.push(segment.clone());
            if !self.modules.contains_key(&child) {
                break;
            }
            base = child;
            k += 1;
        }
        Some((base, path[k..].to_vec()))
    }

    /// The module a reference really depends on: as [`Crate::resolve`], then through `use`
    /// bindings of an ancestor (`crate::Name` where the root re-exports `rootfs::Name`), so
    /// that a re-export hides no edge.
    pub fn target(&self, reference: &Reference) -> Option<ModPath> {
        let (mut module, mut rest) = self.resolve(&reference.from, &reference.path)?;
        for _ in 0..8 {
            if !reference.from.starts_with(&module) {
                break;
            }
            let Some(name) = rest.first() else { break };
            let Some(binding) = self.bindings.get(&module).and_then(|b| b.get(name)) else {
                break;
            };
            let Some((next, mut next_rest)) = self.resolve(&module, &binding.path) else {
                break;
            };
            next_rest.extend(rest.into_iter().skip(1));
            (module, rest) = (next, next_rest);
        }
        Some(module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(source: &str) -> Vec<(String, String, usize)> {
        parse(source, &vec!["m".to_owned()], "m.rs")
            .references
            .into_iter()
            .map(|r| (r.from.join("::"), r.path.join("::"), r.line))
            .collect()
    }

    #[test]
    fn use_groups_expand_with_nesting_self_and_globs() {
        let found =
            paths("use crate::{a, b::{c, d::{self, E as F}}, g::*};\nuse super::{self as up, h};");
        let expected = [
            "crate::a",
            "crate::b::c",
            "crate::b::d",
            "crate::b::d::E",
            "crate::g::*",
            "super",
            "super::h",
        ];
        assert_eq!(
            found.iter().map(|(_, p, _)| p.as_str()).collect::<Vec<_>>(),
            expected
        );
        assert_eq!(found[5].2, 2);
    }

    #[test]
    fn code_paths_are_read_and_dollar_crate_comments_and_strings_are_not() {
        let found = paths(
            "fn f() {\n  crate::a::f(); super::b::C; self::c::d();\n  $crate::x::y; // crate::z\n  \"crate::w\"; Self::new(); self.g();\n  let _ = <crate::t::T>::new();\n}",
        );
        let expected = [
            ("m", "crate::a::f", 2),
            ("m", "super::b::C", 2),
            ("m", "self::c::d", 2),
            ("m", "crate::t::T", 5),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|&(a, b, c)| (a.to_owned(), b.to_owned(), c))
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn inline_modules_change_the_referring_module_and_nest() {
        let found = paths(
            "mod tests {\n  use super::*;\n  mod deeper { fn f() { super::super::x::y(); } }\n}\nfn g() { crate::q(); }",
        );
        let from: Vec<_> = found.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
        assert_eq!(
            from,
            [
                "m::tests super::*",
                "m::tests::deeper super::super::x::y",
                "m crate::q"
            ]
        );
    }

    #[test]
    fn resolution_stops_at_the_deepest_module_and_follows_re_exports() {
        let mut krate = Crate::default();
        for m in ["", "a", "b", "b::inner", "c"] {
            let path: ModPath = m
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            krate.modules.insert(path, String::new());
        }
        krate.add(
            "pub use b::Thing;\nuse crate::c::Other as Renamed;",
            &vec![],
            "lib.rs",
        );
        let s = |p: &str| -> Vec<String> { p.split("::").map(String::from).collect() };
        let a = vec!["a".to_owned()];
        assert_eq!(
            krate.resolve(&a, &s("crate::b::inner::f")),
            Some((s("b::inner"), s("f")))
        );
        assert_eq!(krate.resolve(&a, &s("super::b::X")), Some((s("b"), s("X"))));
        assert_eq!(krate.resolve(&a, &s("std::fs")), None);
        let reference = |path: &str| Reference {
            from: a.clone(),
            path: s(path),
            file: String::new(),
            line: 1,
        };
        assert_eq!(krate.target(&reference("crate::Thing")), Some(s("b")));
        assert_eq!(krate.target(&reference("crate::Renamed")), Some(s("c")));
        assert_eq!(krate.target(&reference("crate::Error")), Some(vec![]));
    }
}
