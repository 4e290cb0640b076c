//! The Dockerfile parser: text in, an AST ([`Node`] per instruction with its lines) out, with
//! BuildKit's rules (`frontend/dockerfile/parser`):
//!
//! - parser directives (`# syntax=`, `# escape=`, `# check=`) only before anything else; the
//!   first line that is not one ends them (a comment, a blank line, an instruction);
//! - the escape character at the end of a line (not itself escaped) continues it; comment
//!   lines and blank lines inside a continuation are skipped (blank ones with a warning);
//! - the keyword is case-insensitive; leading `--flag[=value]` words are the flags (`--` ends
//!   them);
//! - each instruction's arguments are split by its own rule ([`line_parsers`]): JSON array or
//!   shell form, name/value pairs, whitespace-separated words;
//! - RUN, COPY and ADD may carry heredocs (`<<EOF`, `<<-EOF`, quoted delimiters), read from
//!   the lines that follow.

use std::collections::HashMap;

use super::ast::{Heredoc, Node};
use super::line_parsers::new_node_from_line;
use super::shell::Lex;
use super::{Directives, ParseError, Warning};

/// What the parser returns.
#[derive(Debug, Clone)]
pub struct ParseResult {
    /// The root: its children are the instructions.
    pub ast: Node,
    pub directives: Directives,
    pub warnings: Vec<Warning>,
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

fn directive_regex() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
            .expect("valid regex")
    })
}

impl Directives {
    /// Looks at one line while directives may still appear.
    fn possible_directive(&mut self, line: &str, line_no: usize) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let Some(m) = directive_regex().captures(line) else {
            self.done = true;
            return Ok(());
        };
        let key = m[1].to_ascii_lowercase();
        let value = m[2].to_owned();
        let slot = match key.as_str() {
            "escape" => &mut self.escape_value,
            "syntax" => &mut self.syntax,
            "check" => &mut self.check,
            _ => {
                self.done = true;
                return Ok(());
            }
        };
        if slot.is_some() {
            return Err(ParseError::at(
                line_no,
                format!("only one {key} parser directive can be used"),
            ));
        }
        *slot = Some(value.clone());
        if key == "escape" {
            self.escape = match value.as_str() {
                "\\" => '\\',
                "`" => '`',
                _ => {
                    return Err(ParseError::at(
                        line_no,
                        format!("invalid escape token '{value}' does not match ` or \\"),
                    ));
                }
            };
        }
        Ok(())
    }

    /// Strips a line-continuation escape; `true` when the line does not continue. The escape
    /// continues only when it is not itself escaped, or when it stands alone on the line.
    fn trim_continuation<'a>(&self, line: &'a str) -> (&'a str, bool) {
        let body = line.trim_end_matches([' ', '\t']);
        let Some(before) = body.strip_suffix(self.escape) else {
            return (line, true);
        };
        if before.is_empty() || !before.ends_with(self.escape) {
            (before, false)
        } else {
            (line, true)
        }
    }
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<ParseResult, ParseError> {
    let mut d = Directives::default();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    let mut root = Node::default();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut i = 0;
    let mut current = 0;
    while i < lines.len() {
        let raw = trim_newline(lines[i]);
        i += 1;
        if is_comment(raw) {
            let c = raw.trim_start()[1..].trim();
            if c.is_empty() {
                comments.clear();
            } else {
                comments.push(c.to_owned());
            }
        }
        let token = raw.trim_start();
        d.possible_directive(token, current + 1)?;
        let token = if token.starts_with('#') { "" } else { token };
        current += 1;
        let start = current;
        let (first, mut end) = d.trim_continuation(token);
        if end && first.is_empty() {
            continue;
        }
        let mut line = first.to_owned();
        let mut empty_continuation = false;
        while !end && i < lines.len() {
            let raw = trim_newline(lines[i]);
            i += 1;
            d.possible_directive(raw, current + 1)?;
            current += 1;
            if is_comment(raw) {
                continue;
            }
            if raw.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (cont, e) = d.trim_continuation(raw);
            line.push_str(cont);
            end = e;
        }
        if empty_continuation {
            warnings.push(Warning { line: start, message: "Empty continuation line found in instruction: empty continuation lines will become errors in a future release".into() });
        }
        let mut node = new_node_from_line(&line, &d, std::mem::take(&mut comments))
            .map_err(|m| ParseError::span(start, current, m))?;
        if matches!(node.value.as_str(), "run" | "copy" | "add") && line.contains("<<") {
            for mut doc in
                heredocs_from_line(&line).map_err(|m| ParseError::span(start, current, m))?
            {
                let mut terminated = false;
                while i < lines.len() {
                    let raw = trim_newline(lines[i]);
                    i += 1;
                    current += 1;
                    let candidate = if doc.chomp {
                        raw.trim_start_matches('\t')
                    } else {
                        raw
                    };
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                    doc.content.push('\n');
                }
                if !terminated {
                    return Err(ParseError::span(
                        start,
                        current,
                        format!("unterminated heredoc {}", doc.name),
                    ));
                }
                doc.raw.clone_from(&doc.content);
                if doc.chomp {
                    doc.content = doc
                        .content
                        .split_inclusive('\n')
                        .map(|l| l.trim_start_matches('\t'))
                        .collect();
                }
                node.heredocs.push(doc);
            }
        }
        node.start_line = start;
        node.end_line = current;
        root.children.push(node);
    }
    if root.children.is_empty() {
        return Err(ParseError::at(
            current.max(1),
            "file with no instructions".into(),
        ));
    }
    root.start_line = root.children[0].start_line;
    root.end_line = root.children.last().map_or(0, |n| n.end_line);
    Ok(ParseResult {
        ast: root,
        directives: d,
        warnings,
    })
}

/// The heredocs a line opens, in order (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`).
pub fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let lex = Lex {
        raw_quotes: true,
        raw_escapes: true,
        ..Lex::new('\\')
    };
    let words = lex.process_words(line, &HashMap::new()).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// One `[n]<<[-]NAME` word; `None` when the word is not a heredoc.
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(r"^(\d*)<<(-?)([^<]*)$").expect("valid regex"));
    let Some(m) = re.captures(word) else {
        return Ok(None);
    };
    let fd = m[1].parse().unwrap_or(0);
    let chomp = &m[2] == "-";
    let raw_name = &m[3];
    if raw_name.is_empty() {
        return Ok(None);
    }
    let words = Lex::new('\\')
        .process_words(raw_name, &HashMap::new())
        .map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Err("multi-word heredoc name is not supported".into());
    }
    let name = words.into_iter().next().expect("one word");
    Ok(Some(Heredoc {
        expand: name == raw_name,
        name,
        content: String::new(),
        raw: String::new(),
        chomp,
        file_descriptor: fd,
    }))
}
