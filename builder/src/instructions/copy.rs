//! COPY and ADD: sources and a destination, with their flags.

use super::flags::{Flags, Kind};
use crate::dockerfile::{Heredoc, Node};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInst {
    pub sources: Vec<String>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    /// ADD only.
    pub keep_git_dir: bool,
    /// ADD only: the expected digest of a remote source.
    pub checksum: Option<String>,
    /// ADD only: `--unpack=false` keeps archives as files.
    pub unpack: Option<bool>,
    pub heredocs: Vec<Heredoc>,
}

pub fn parse_copy(node: &Node, add: bool) -> Result<CopyInst, String> {
    let keyword = if add { "ADD" } else { "COPY" };
    let mut allowed = vec![
        ("chown", Kind::String),
        ("chmod", Kind::String),
        ("link", Kind::Bool),
        ("parents", Kind::Bool),
        ("exclude", Kind::List),
    ];
    if add {
        allowed.extend([
            ("keep-git-dir", Kind::Bool),
            ("checksum", Kind::String),
            ("unpack", Kind::Bool),
        ]);
    } else {
        allowed.push(("from", Kind::String));
    }
    let f = Flags::parse(&node.flags, &allowed)?;
    let words: Vec<String> = node.words().into_iter().map(str::to_owned).collect();
    if words.len() < 2 {
        return Err(format!(
            "{keyword} requires at least two arguments, but only {} provided: the destination could not be determined",
            words.len()
        ));
    }
    let (dest, sources) = words.split_last().expect("two words");
    if let Some(chmod) = f.string("chmod") {
        check_chmod(&chmod)?;
    }
    let unpack = add
        .then(|| {
            node.flags
                .iter()
                .any(|w| w.starts_with("--unpack"))
                .then(|| f.bool("unpack"))
        })
        .flatten();
    Ok(CopyInst {
        sources: sources.to_vec(),
        dest: dest.clone(),
        from: f.string("from"),
        chown: f.string("chown"),
        chmod: f.string("chmod"),
        link: f.bool("link"),
        parents: f.bool("parents"),
        exclude: f.list("exclude"),
        keep_git_dir: f.bool("keep-git-dir"),
        checksum: f.string("checksum"),
        unpack,
        heredocs: super::heredocs(node),
    })
}

/// Octal (`755`, `0644`) or symbolic (`u+x,go=r`) modes, as BuildKit accepts them.
fn check_chmod(mode: &str) -> Result<(), String> {
    if mode.contains('$') {
        return Ok(()); // checked after expansion
    }
    let octal =
        !mode.is_empty() && mode.len() <= 4 && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let symbolic =
        regex::Regex::new(r"^([ugoa]*[-+=]([rwxXst]*|[ugo]))(,[ugoa]*[-+=]([rwxXst]*|[ugo]))*$")
            .expect("valid regex")
            .is_match(mode);
    if octal || symbolic {
        Ok(())
    } else {
        Err(format!(
            "invalid --chmod value {mode:?}: use octal (0755) or symbolic (u+x) notation"
        ))
    }
}
