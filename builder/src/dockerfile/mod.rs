//! The Dockerfile frontend's first half: Dockerfile text in, an AST out ([`parse`]), plus
//! the shell-word expansion every instruction uses ([`shell`]).
//!
//! | module | in → out |
//! |---|---|
//! | [`parser`] | text → [`ast::Node`]s with start/end lines, directives, warnings, heredocs |
//! | [`line_parsers`] | one instruction's argument text → its words (per-keyword rules) |
//! | [`shell`] | a word + environment → expanded word(s) |
//! | [`ast`] | the node type and BuildKit's s-expression dump |
//!
//! Why our own parser: no Rust crate matches BuildKit (DEPENDENCIES.md: dockerfile-parser
//! dumps 12 of 33 of BuildKit's cases identically); this one is held to BuildKit's corpus.

pub mod ast;
pub mod line_parsers;
pub mod parser;
pub mod shell;

pub use ast::{Heredoc, Node};
pub use parser::{ParseResult, parse};

/// Parser directives found at the top of the file.
#[derive(Debug, Clone)]
pub struct Directives {
    /// The escape character (`\` unless `# escape=` says `` ` ``).
    pub escape: char,
    pub escape_value: Option<String>,
    pub syntax: Option<String>,
    pub check: Option<String>,
    /// No more directives may appear.
    pub(crate) done: bool,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            escape_value: None,
            syntax: None,
            check: None,
            done: false,
        }
    }
}

/// Something worth saying that does not stop the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

/// A Dockerfile error with the lines it concerns (1-based, inclusive).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dockerfile parse error on line {start_line}: {message}")]
pub struct ParseError {
    pub start_line: usize,
    pub end_line: usize,
    pub message: String,
}

impl ParseError {
    pub fn at(line: usize, message: String) -> ParseError {
        ParseError {
            start_line: line,
            end_line: line,
            message,
        }
    }

    pub fn span(start_line: usize, end_line: usize, message: String) -> ParseError {
        ParseError {
            start_line,
            end_line,
            message,
        }
    }

    /// The error as BuildKit shows it: the file and line, the lines around it with the
    /// faulty ones marked `>>>`, and a caret under the first word of the first of them.
    pub fn render(&self, source: &str, file: &str) -> String {
        render_snippet(source, file, self.start_line, self.end_line, &self.message)
    }
}

/// `file:line`, a framed excerpt with `>>>` on the lines concerned and a caret under the
/// first of them, then the message.
pub fn render_snippet(source: &str, file: &str, start: usize, end: usize, message: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let first = start.saturating_sub(3).max(1);
    let last = end.min(lines.len()).max(start.min(lines.len()));
    let mut out = format!("{file}:{start}\n--------------------\n");
    for n in first..=last {
        let text = lines.get(n - 1).copied().unwrap_or("");
        let mark = if (start..=end).contains(&n) {
            ">>>"
        } else {
            "   "
        };
        out.push_str(&format!(" {n:>3} | {mark} {text}\n"));
        if n == start {
            let indent = text.len() - text.trim_start().len();
            let width = text
                .split_whitespace()
                .next()
                .map_or(1, |w| w.chars().count());
            out.push_str(&format!(
                "     |     {}{}\n",
                " ".repeat(indent),
                "^".repeat(width.max(1))
            ));
        }
    }
    out.push_str("--------------------\n");
    out.push_str(&format!("error: {message}\n"));
    out
}
