//! References → edges between sibling modules → circles. A reference from `a::x` to `b::y`
//! is an edge `a → b` between the children of their nearest common ancestor; a reference to
//! a module's own ancestor or descendant is no edge (a child may use its parent's items, a
//! parent its children's). A circle is a path of edges back to where it began.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::modules::{Crate, ModPath};

/// An edge between two sibling modules, with the first reference that makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub parent: ModPath,
    pub from: String,
    pub to: String,
    /// `file:line path`, for the report.
    pub witness: String,
}

impl Edge {
    fn name(&self, child: &str) -> String {
        let mut path = vec!["crate"];
        path.extend(self.parent.iter().map(String::as_str));
        path.push(child);
        path.join("::")
    }
}

impl std::fmt::Display for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} → {}  ({})",
            self.name(&self.from),
            self.name(&self.to),
            self.witness
        )
    }
}

/// Every sibling edge of the crate, one per pair of modules (the first reference in file and
/// line order), sorted.
pub fn edges(krate: &Crate) -> Vec<Edge> {
    let mut references = krate.references.clone();
    references.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let mut found: BTreeMap<(ModPath, String, String), String> = BTreeMap::new();
    for reference in &references {
        let Some(to) = krate.target(reference) else {
            continue;
        };
        let from = &reference.from;
        if from.starts_with(&to) || to.starts_with(from) {
            continue;
        }
        let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
        let key = (
            from[..common].to_vec(),
            from[common].clone(),
            to[common].clone(),
        );
        found.entry(key).or_insert_with(|| {
            format!(
                "{}:{} {}",
                reference.file,
                reference.line,
                reference.path.join("::")
            )
        });
    }
    found
        .into_iter()
        .map(|((parent, from, to), witness)| Edge {
            parent,
            from,
            to,
            witness,
        })
        .collect()
}

/// The circles among `edges`: each edge that lies on any circle is on at least one circle
/// listed, and each listed circle is a shortest one through its first edge. Empty when the
/// modules form no circle.
pub fn circles(edges: &[Edge]) -> Vec<Vec<Edge>> {
    let mut by_node: BTreeMap<(&ModPath, &str), Vec<&Edge>> = BTreeMap::new();
    for edge in edges {
        by_node
            .entry((&edge.parent, edge.from.as_str()))
            .or_default()
            .push(edge);
    }
    let mut covered: BTreeSet<(ModPath, String, String)> = BTreeSet::new();
    let mut circles = Vec::new();
    for edge in edges {
        let key = (edge.parent.clone(), edge.from.clone(), edge.to.clone());
        if covered.contains(&key) {
            continue;
        }
        let Some(back) = shortest_path(&by_node, &edge.parent, &edge.to, &edge.from) else {
            continue;
        };
        let mut circle = vec![edge.clone()];
        circle.extend(back.into_iter().cloned());
        for e in &circle {
            covered.insert((e.parent.clone(), e.from.clone(), e.to.clone()));
        }
        circles.push(circle);
    }
    circles
}

/// The edges of a shortest path from `start` to `goal` among the children of `parent`.
fn shortest_path<'e>(
    by_node: &BTreeMap<(&ModPath, &str), Vec<&'e Edge>>,
    parent: &ModPath,
    start: &str,
    goal: &str,
) -> Option<Vec<&'e Edge>> {
    let mut came_by: BTreeMap<&str, &Edge> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    let mut seen = BTreeSet::from([start]);
    while let Some(node) = queue.pop_front() {
        if node == goal {
            let mut path = Vec::new();
            let mut at = goal;
            while at != start {
                let edge = came_by[at];
                path.push(edge);
                at = &edge.from;
            }
            path.reverse();
            return Some(path);
        }
        for edge in by_node.get(&(parent, node)).into_iter().flatten() {
            if seen.insert(&edge.to) {
                came_by.insert(&edge.to, edge);
                queue.push_back(&edge.to);
            }
        }
    }
    None
}

/// A circle as the report prints it: the modules in order, then one reference per edge.
pub fn describe(circle: &[Edge]) -> String {
    let mut names: Vec<String> = circle.iter().map(|e| e.name(&e.from)).collect();
    names.push(circle[0].name(&circle[0].from));
    let mut out = format!("circle: {}\n", names.join(" → "));
    for edge in circle {
        out.push_str(&format!("    {edge}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn krate(files: &[(&str, &str)]) -> Crate {
        let mut krate = Crate::default();
        for (module, source) in files {
            let path: ModPath = module
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            krate.add(source, &path, module);
        }
        krate
    }

    fn names(circles: &[Vec<Edge>]) -> Vec<String> {
        circles
            .iter()
            .map(|c| describe(c).lines().next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn ancestors_and_descendants_make_no_edge() {
        let k = krate(&[
            ("", "fn f() { a::g(); crate::a::b::h(); }"),
            (
                "a",
                "use crate::Error; use super::*; fn g() { self::b::h(); }",
            ),
            (
                "a::b",
                "use crate::a::Thing; mod tests { use super::super::Thing; }",
            ),
        ]);
        assert_eq!(edges(&k), []);
    }

    #[test]
    fn references_between_cousins_are_edges_between_their_ancestors_siblings() {
        let k = krate(&[
            ("", ""),
            ("a", ""),
            ("a::x", "mod tests { use crate::b::y::Z; }"),
            ("b", ""),
            ("b::y", "fn f() { super::super::a::x::g(); }"),
        ]);
        let found: Vec<_> = edges(&k).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            found,
            [
                "crate::a → crate::b  (a::x:1 crate::b::y::Z)",
                "crate::b → crate::a  (b::y:1 super::super::a::x::g)"
            ]
        );
        assert_eq!(
            names(&circles(&edges(&k))),
            ["circle: crate::a → crate::b → crate::a"]
        );
    }

    #[test]
    fn every_edge_on_a_circle_is_reported_and_a_chain_is_not() {
        // a → b → c → a, and c → b; d → a is no circle.
        let k = krate(&[
            ("", ""),
            ("a", "use crate::b::B;"),
            ("b", "use crate::c::C;"),
            ("c", "use crate::{a::A, b::B};"),
            ("d", "use crate::a::A;"),
        ]);
        assert_eq!(
            names(&circles(&edges(&k))),
            [
                "circle: crate::a → crate::b → crate::c → crate::a",
                "circle: crate::c → crate::b → crate::c",
            ]
        );
    }

    #[test]
    fn a_re_export_at_the_root_does_not_hide_an_edge() {
        let k = krate(&[
            ("", "pub use b::B;"),
            ("a", "fn f() -> crate::B { todo!() }"),
            ("b", "use crate::a;"),
        ]);
        assert_eq!(
            names(&circles(&edges(&k))),
            ["circle: crate::a → crate::b → crate::a"]
        );
    }
}
