//! The Dockerfile AST: what the parser makes, in BuildKit's node shape (`Value`, `Next`,
//! `Children`, `Flags`, `Attributes`, heredocs, start and end lines), and its s-expression
//! dump (`(copy ["--from=a"] "x" "/y")`), byte for byte as BuildKit's `Node.Dump`, so
//! BuildKit's corpus checks this parser as it is.

/// One node: an instruction at the top level, or a word of one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// The instruction keyword, lowercased, or a word.
    pub value: String,
    /// The following words of the instruction.
    pub next: Option<Box<Node>>,
    /// Sub-instructions (`ONBUILD RUN …`) and, at the root, the instructions.
    pub children: Vec<Node>,
    /// `--flag[=value]` words, as written.
    pub flags: Vec<String>,
    /// The instruction's arguments were a JSON array.
    pub json: bool,
    /// The whole logical line, continuations joined.
    pub original: String,
    pub heredocs: Vec<Heredoc>,
    /// First and last physical line (1-based), continuations and heredocs included.
    pub start_line: usize,
    pub end_line: usize,
    /// Comment lines directly above the instruction.
    pub comments: Vec<String>,
}

/// `<<EOF` … `EOF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    /// The lines between, each with its newline (with `<<-`, their leading tabs stripped).
    pub content: String,
    /// The lines between as written (tabs kept): what a RUN gives its shell along with a
    /// `<<-` it leaves to the shell.
    pub raw: String,
    /// Unquoted delimiter: the content is expanded.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped.
    pub chomp: bool,
    /// `3<<EOF` redirects a descriptor other than stdin.
    pub file_descriptor: u32,
}

/// The most words one instruction may have: the parser refuses more, so nothing that walks
/// a chain (clone, comparison, the dump) goes deeper than this.
pub const MAX_WORDS: usize = 4_000;

/// A chain of words is dropped one node after the other: a derived drop would recurse once
/// per word.
impl Drop for Node {
    fn drop(&mut self) {
        let mut next = self.next.take();
        while let Some(mut node) = next {
            next = node.next.take();
        }
    }
}

impl Node {
    pub fn leaf(value: impl Into<String>) -> Node {
        let mut n = Node::default();
        n.value = value.into();
        n
    }

    /// How many words follow the keyword.
    pub fn word_count(&self) -> usize {
        let mut count = 0;
        let mut n = self.next.as_deref();
        while let Some(node) = n {
            count += 1;
            n = node.next.as_deref();
        }
        count
    }

    /// The words after the keyword.
    pub fn words(&self) -> Vec<&str> {
        let mut out = Vec::new();
        let mut n = self.next.as_deref();
        while let Some(node) = n {
            out.push(node.value.as_str());
            n = node.next.as_deref();
        }
        out
    }

    /// A chain of leaves from words.
    pub fn chain<I: IntoIterator<Item = String>>(words: I) -> Option<Box<Node>> {
        let words: Vec<String> = words.into_iter().collect();
        let mut next = None;
        for w in words.into_iter().rev() {
            let mut n = Node::default();
            n.value = w;
            n.next = next;
            next = Some(Box::new(n));
        }
        next
    }

    /// BuildKit's s-expression dump.
    pub fn dump(&self) -> String {
        let mut s = self.value.to_lowercase();
        if !self.flags.is_empty() {
            s.push_str(" [");
            s.push_str(
                &self
                    .flags
                    .iter()
                    .map(|f| go_quote(f))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            s.push(']');
        }
        for child in &self.children {
            s.push('(');
            s.push_str(&child.dump());
            s.push_str(")\n");
        }
        let mut n = self.next.as_deref();
        while let Some(node) = n {
            s.push(' ');
            if node.children.is_empty() {
                s.push_str(&go_quote(&node.value));
            } else {
                s.push_str(&node.dump());
            }
            n = node.next.as_deref();
        }
        s.trim().to_owned()
    }
}

/// A string quoted as Go's `strconv.Quote` does (the `%q` of BuildKit's dump).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` for characters above ASCII control codes:
/// controls, format characters, separators other than space, and unassigned or private
/// code points are escaped.
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    !(c.is_control()
        || (0x2000..=0x200f).contains(&u)
        || (0x2028..=0x202f).contains(&u)
        || (0x205f..=0x206f).contains(&u)
        || u == 0x00a0
        || u == 0x00ad
        || u == 0xfeff
        || (0xe000..=0xf8ff).contains(&u)
        || (0xfff0..=0xfffb).contains(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}\u{8}\u{c}\n\r\t"), r#""\x00\b\f\n\r\t""#);
        assert_eq!(go_quote("♥☃"), "\"♥☃\"");
    }
}
