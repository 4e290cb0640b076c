//! Docker-style `--format` templates: the part of Go's text/template that Docker's docs and
//! CI scripts use, evaluated over a `serde_json::Value` (each listing command builds its rows
//! as JSON objects).
//!
//! Supported: text and `{{ }}` actions with `{{-`/`-}}` trimming and `{{/* comments */}}`;
//! pipelines (`a | b`); fields (`.A.B`, `$.A`, `$x.A`, `(pipe).A`); variables
//! (`$x := pipe`, `$x = pipe`); `if`/`else if`/`else`/`end`, `range` (with `$i, $v :=`)
//! and `with`; string, raw string, number, `true`/`false`/`nil` literals; Go's functions
//! `index len print println printf eq ne lt le gt ge and or not` and Docker's
//! `json join split lower upper title pad truncate`.
//!
//! A template is user input and the data comes from images: the template's length, the
//! nesting of its blocks, the output of one rendering and the work done are all bounded,
//! and every string of the data (keys too) is made terminal-safe before the template sees
//! it, so whatever a template prints, only the template's own text can hold control
//! characters.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// The longest template accepted, in bytes.
const MAX_TEMPLATE: usize = 16 * 1024;
/// The most output one rendering may produce, in bytes.
const MAX_OUTPUT: usize = 16 * 1024 * 1024;
/// How deep blocks (`if`, `range`, `with`) and parentheses may nest.
const MAX_NESTING: usize = 32;
/// How many nodes one rendering may evaluate (range iterations count each time).
const MAX_STEPS: u64 = 5_000_000;
/// How many bytes of values one rendering may make (function results, range items, values
/// taken from the data), whatever becomes of them: what bounds its time and memory when
/// values are built in variables and pipelines and never printed.
const MAX_WORK: usize = 256 * 1024 * 1024;

/// A template the user gave that cannot be parsed or evaluated over the data.
#[derive(Debug, thiserror::Error)]
#[error("template: {0}")]
pub struct TemplateError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError(msg.into()))
}

/// What `--format` asked for.
pub enum Format {
    /// The command's own table.
    Table,
    /// One JSON object per line (Docker's `--format json`).
    Json,
    /// A template: rows are rendered one per line; with `table`, aligned under a header.
    Template { template: Template, table: bool },
}

impl Format {
    /// Parses a `--format` value: `table`, `json`, `table TEMPLATE` or `TEMPLATE`. As Docker,
    /// the two-character sequences `\t` and `\n` in a template stand for tab and newline.
    pub fn parse(format: &str) -> Result<Format, TemplateError> {
        match format {
            "" | "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            _ => {
                let (table, text) = match format.strip_prefix("table ") {
                    Some(rest) => (true, rest),
                    None => (false, format),
                };
                let text = text.replace("\\t", "\t").replace("\\n", "\n");
                Ok(Format::Template {
                    template: Template::parse(&text)?,
                    table,
                })
            }
        }
    }
}

/// Renders a template over each row and prints the result: one line per row (Docker adds
/// the newline), or with `table`, a header row made by rendering the template over
/// `headers` (field names to column names, and the hidden fields' column names) and cells
/// split at tabs, aligned as the default tables are. `hidden` holds, per row, fields
/// reachable from the row but not part of it (methods in Docker's structs, as
/// `.Label "k"`): they are looked up when a row lacks them.
pub fn print_rows(
    template: &Template,
    table: bool,
    headers: (&Value, Option<&Value>),
    rows: &[Value],
    hidden: &[Value],
) -> Result<(), TemplateError> {
    let mut lines = Vec::new();
    if table {
        lines.push(template.render_with(headers.0, headers.1)?);
    }
    for (i, row) in rows.iter().enumerate() {
        lines.push(template.render_with(row, hidden.get(i))?);
    }
    if !table {
        for line in lines {
            outln!("{line}");
        }
        return Ok(());
    }
    let split: Vec<Vec<String>> = lines
        .iter()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    crate::output::print_columns(&split);
    Ok(())
}

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
}

#[derive(Debug)]
struct Pipe {
    /// Variables declared (`:=`) or assigned (`=`) with the result.
    vars: Vec<String>,
    declare: bool,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug)]
enum Arg {
    Dot,
    /// `.A.B`
    Field(Vec<String>),
    /// `$x.A.B` (`$` alone is the root)
    Var(String, Vec<String>),
    /// `(pipe).A.B`
    Sub(Box<Pipe>, Vec<String>),
    Func(String),
    Lit(Value),
}

// ---------------------------------------------------------------------------------------
// Lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Num(Value),
    LParen,
    /// `)` and the fields that follow it (`(pipe).A`).
    RParen(Vec<String>),
    Pipe,
    Declare,
    Assign,
    Comma,
}

/// The template split into text and the tokens of each action.
enum Piece {
    Text(String),
    Action(Vec<Tok>),
}

fn lex(src: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            let text = if trim_next { rest.trim_start() } else { rest };
            pieces.push(Piece::Text(text.to_owned()));
            break;
        };
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let mut inner = &rest[open + 2..];
        if let Some(after) = inner.strip_prefix("- ").or_else(|| {
            inner
                .strip_prefix('-')
                .filter(|a| a.starts_with(['\t', '\n', '\r']))
        }) {
            text = text.trim_end();
            inner = after;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_owned()));
        }
        let (tokens, consumed, trim) = lex_action(inner)?;
        trim_next = trim;
        if let Some(tokens) = tokens {
            pieces.push(Piece::Action(tokens));
        }
        rest = &inner[consumed..];
    }
    Ok(pieces)
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Reads `.A.B` (starting at a dot) and returns the names and the bytes used.
fn lex_fields(s: &str) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut i = 0;
    while s[i..].starts_with('.') {
        let name: String = s[i + 1..]
            .chars()
            .take_while(|&c| is_ident_char(c))
            .collect();
        if name.is_empty() {
            break;
        }
        i += 1 + name.len();
        names.push(name);
    }
    (names, i)
}

/// Lexes one action up to its `}}`: the tokens (none for a comment), the bytes consumed
/// and whether it ended with `-}}`.
#[allow(clippy::type_complexity)]
fn lex_action(s: &str) -> Result<(Option<Vec<Tok>>, usize, bool), TemplateError> {
    let trimmed = s.trim_start();
    if let Some(c) = trimmed.strip_prefix("/*") {
        let Some(end) = c.find("*/") else {
            return err("unclosed comment");
        };
        let after = &c[end + 2..];
        let after_ws = after.trim_start();
        let (trim, close) = if let Some(a) = after_ws.strip_prefix("-}}") {
            (true, a)
        } else if let Some(a) = after.strip_prefix("}}") {
            (false, a)
        } else {
            return err("comment ends with no closing }}");
        };
        return Ok((None, s.len() - close.len(), trim));
    }
    let mut toks = Vec::new();
    let mut i = 0;
    loop {
        let rest = &s[i..];
        let Some(c) = rest.chars().next() else {
            return err("unclosed action: missing }}");
        };
        if c.is_whitespace() {
            if let Some(after) = rest.trim_start().strip_prefix("-}}") {
                return Ok((Some(toks), s.len() - after.len(), true));
            }
            i += c.len_utf8();
            continue;
        }
        if rest.starts_with("}}") {
            return Ok((Some(toks), i + 2, false));
        }
        match c {
            '.' => {
                let (names, used) = lex_fields(rest);
                if used == 0 {
                    toks.push(Tok::Field(Vec::new()));
                    i += 1;
                } else {
                    toks.push(Tok::Field(names));
                    i += used;
                }
            }
            '$' => {
                let name: String = rest[1..]
                    .chars()
                    .take_while(|&c| is_ident_char(c))
                    .collect();
                let (fields, used) = lex_fields(&rest[1 + name.len()..]);
                toks.push(Tok::Var(format!("${name}"), fields));
                i += 1 + name.len() + used;
            }
            '(' => {
                toks.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                let (fields, used) = lex_fields(&rest[1..]);
                toks.push(Tok::RParen(fields));
                i += 1 + used;
            }
            '|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            ':' if rest.starts_with(":=") => {
                toks.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                toks.push(Tok::Assign);
                i += 1;
            }
            '"' => {
                let mut out = String::new();
                let mut chars = rest[1..].char_indices();
                let end = loop {
                    match chars.next() {
                        None => return err("unterminated quoted string"),
                        Some((j, '"')) => break j,
                        Some((_, '\\')) => match chars.next().map(|(_, c)| c) {
                            Some('n') => out.push('\n'),
                            Some('t') => out.push('\t'),
                            Some('\\') => out.push('\\'),
                            Some('"') => out.push('"'),
                            Some(other) => return err(format!("unknown escape \\{other}")),
                            None => return err("unterminated quoted string"),
                        },
                        Some((_, c)) => out.push(c),
                    }
                };
                toks.push(Tok::Str(out));
                i += 1 + end + 1;
            }
            '`' => {
                let Some(end) = rest[1..].find('`') else {
                    return err("unterminated raw string");
                };
                toks.push(Tok::Str(rest[1..1 + end].to_owned()));
                i += end + 2;
            }
            '-' | '0'..='9' => {
                let text: String = rest
                    .chars()
                    .enumerate()
                    .take_while(|&(k, c)| c.is_ascii_digit() || c == '.' || (k == 0 && c == '-'))
                    .map(|(_, c)| c)
                    .collect();
                let value = if let Ok(n) = text.parse::<i64>() {
                    Value::from(n)
                } else if let Some(n) = text
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                {
                    Value::Number(n)
                } else {
                    return err(format!("bad number {text:?}"));
                };
                toks.push(Tok::Num(value));
                i += text.len();
            }
            c if is_ident_char(c) => {
                let name: String = rest.chars().take_while(|&c| is_ident_char(c)).collect();
                i += name.len();
                toks.push(Tok::Ident(name));
            }
            other => {
                return err(format!("unexpected {other:?} in action"));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Parsing

struct Parser {
    pieces: std::vec::IntoIter<Piece>,
    depth: usize,
}

/// How a list of nodes ended.
enum Stop {
    Eof,
    End,
    Else(Vec<Tok>),
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        if src.len() > MAX_TEMPLATE {
            return err(format!("longer than {MAX_TEMPLATE} bytes"));
        }
        let mut p = Parser {
            pieces: lex(src)?.into_iter(),
            depth: 0,
        };
        let (nodes, end) = p.list()?;
        match end {
            Stop::Eof => Ok(Template { nodes }),
            Stop::End => err("unexpected {{end}}"),
            Stop::Else(_) => err("unexpected {{else}}"),
        }
    }
}

impl Parser {
    fn list(&mut self) -> Result<(Vec<Node>, Stop), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(piece) = self.pieces.next() {
            let toks = match piece {
                Piece::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Piece::Action(toks) => toks,
            };
            let keyword = match toks.first() {
                Some(Tok::Ident(k)) => k.as_str(),
                None => return err("empty action {{}}"),
                _ => "",
            };
            match keyword {
                "end" if toks.len() == 1 => return Ok((nodes, Stop::End)),
                "else" => return Ok((nodes, Stop::Else(toks[1..].to_vec()))),
                "if" | "range" | "with" => {
                    let kind = keyword.to_owned();
                    nodes.push(self.block(&kind, &toks[1..])?);
                }
                "define" | "template" | "block" | "break" | "continue" => {
                    return err(format!("{{{{{keyword}}}}} is not supported"));
                }
                _ => nodes.push(Node::Action(pipe(&toks, 0)?)),
            }
        }
        Ok((nodes, Stop::Eof))
    }

    /// `if`/`range`/`with` after its keyword: the body, an `else` (or `else if`, `else
    /// with`, which nest), and the `end`.
    fn block(&mut self, kind: &str, toks: &[Tok]) -> Result<Node, TemplateError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return err(format!("blocks nest deeper than {MAX_NESTING}"));
        }
        let cond = pipe(toks, 0)?;
        if cond.cmds.is_empty() {
            return err(format!("missing value for {kind}"));
        }
        let (body, end) = self.list()?;
        let otherwise = match end {
            Stop::Eof => {
                return err(format!(
                    "unexpected end of template: {{{{{kind}}}}} has no {{{{end}}}}"
                ));
            }
            Stop::End => Vec::new(),
            Stop::Else(rest) if rest.is_empty() => {
                let (otherwise, end) = self.list()?;
                if !matches!(end, Stop::End) {
                    return err(format!(
                        "{{{{{kind}}}}} ... {{{{else}}}} has no {{{{end}}}}"
                    ));
                }
                otherwise
            }
            Stop::Else(rest) => match rest.first() {
                Some(Tok::Ident(k)) if k == "if" || k == "with" => {
                    // `else if` ends at the same `end` as the block it continues.
                    let k = k.clone();
                    vec![self.block(&k, &rest[1..])?]
                }
                _ => return err("{{else}} takes nothing but `if` or `with`"),
            },
        };
        self.depth -= 1;
        Ok(match kind {
            "if" => Node::If(cond, body, otherwise),
            "range" => Node::Range(cond, body, otherwise),
            _ => Node::With(cond, body, otherwise),
        })
    }
}

/// A pipeline from tokens: `[$a[, $b] :=] cmd [| cmd]...`.
fn pipe(toks: &[Tok], depth: usize) -> Result<Pipe, TemplateError> {
    if depth > MAX_NESTING {
        return err(format!("parentheses nest deeper than {MAX_NESTING}"));
    }
    let mut vars = Vec::new();
    let mut declare = true;
    let mut start = 0;
    let decl_at = toks
        .iter()
        .position(|t| matches!(t, Tok::Declare | Tok::Assign));
    if let Some(at) = decl_at {
        let names = &toks[..at];
        let ok = names.iter().enumerate().all(|(i, t)| {
            if i % 2 == 1 {
                *t == Tok::Comma
            } else {
                matches!(t, Tok::Var(_, f) if f.is_empty())
            }
        });
        if ok && !names.is_empty() && names.len() <= 3 {
            for t in names {
                if let Tok::Var(n, _) = t {
                    vars.push(n.clone());
                }
            }
            declare = toks[at] == Tok::Declare;
            start = at + 1;
        }
    }
    let mut cmds = Vec::new();
    let mut cmd = Vec::new();
    let mut i = start;
    while i < toks.len() {
        let arg = match &toks[i] {
            Tok::Pipe => {
                if cmd.is_empty() {
                    return err("missing command before |");
                }
                cmds.push(std::mem::take(&mut cmd));
                i += 1;
                continue;
            }
            Tok::Field(f) if f.is_empty() => Arg::Dot,
            Tok::Field(f) => Arg::Field(f.clone()),
            Tok::Var(n, f) => Arg::Var(n.clone(), f.clone()),
            Tok::Str(s) => Arg::Lit(Value::String(s.clone())),
            Tok::Num(n) => Arg::Lit(n.clone()),
            Tok::Ident(id) => match id.as_str() {
                "true" => Arg::Lit(Value::Bool(true)),
                "false" => Arg::Lit(Value::Bool(false)),
                "nil" => Arg::Lit(Value::Null),
                _ => Arg::Func(id.clone()),
            },
            Tok::LParen => {
                let mut level = 0;
                let mut close = None;
                for (j, t) in toks.iter().enumerate().skip(i) {
                    match t {
                        Tok::LParen => level += 1,
                        Tok::RParen(_) => {
                            level -= 1;
                            if level == 0 {
                                close = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let Some(j) = close else {
                    return err("unclosed left paren");
                };
                let Tok::RParen(fields) = &toks[j] else {
                    unreachable!()
                };
                let inner = pipe(&toks[i + 1..j], depth + 1)?;
                i = j + 1;
                cmd.push(Arg::Sub(Box::new(inner), fields.clone()));
                continue;
            }
            Tok::RParen(_) => return err("unexpected right paren"),
            Tok::Declare | Tok::Assign | Tok::Comma => {
                return err("unexpected := , or = in pipeline");
            }
        };
        cmd.push(arg);
        i += 1;
    }
    if !cmd.is_empty() {
        cmds.push(cmd);
    } else if !cmds.is_empty() {
        return err("missing command after |");
    }
    if cmds.is_empty() && !vars.is_empty() {
        return err("missing value for declaration");
    }
    Ok(Pipe {
        vars,
        declare,
        cmds,
    })
}

// ---------------------------------------------------------------------------------------
// Evaluation

struct State<'a> {
    root: &'a Value,
    hidden: Option<&'a Value>,
    vars: Vec<(String, Value)>,
    out: String,
    steps: u64,
    /// Bytes of values made so far ([`MAX_WORK`]).
    work: usize,
}

impl Template {
    /// Renders the template over `data` (terminal-safe copies of its strings are used).
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        self.render_with(data, None)
    }

    fn render_with(&self, data: &Value, hidden: Option<&Value>) -> Result<String, TemplateError> {
        self.render_work(data, hidden).0
    }

    /// The rendering, and the bytes of values it made.
    fn render_work(
        &self,
        data: &Value,
        hidden: Option<&Value>,
    ) -> (Result<String, TemplateError>, usize) {
        let data = sanitize(data);
        let hidden = hidden.map(sanitize);
        let mut st = State {
            root: &data,
            hidden: hidden.as_ref(),
            vars: vec![("$".to_owned(), data.clone())],
            out: String::new(),
            steps: 0,
            work: 0,
        };
        let done = st.walk(&self.nodes, &data);
        (done.map(|()| std::mem::take(&mut st.out)), st.work)
    }

    #[cfg(test)]
    fn render_counting(&self, data: &Value) -> (Result<String, TemplateError>, usize) {
        self.render_work(data, None)
    }
}

/// The value with every string and key passed through [`crate::output::terminal_safe`].
fn sanitize(v: &Value) -> Value {
    use crate::output::terminal_safe;
    match v {
        Value::String(s) => Value::String(terminal_safe(s).into_owned()),
        Value::Array(a) => Value::Array(a.iter().map(sanitize).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (terminal_safe(k).into_owned(), sanitize(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Go's truth: false, 0, nil and empty strings, lists and maps are false.
fn truth(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A value printed as Go's `fmt.Print` prints it: `[a b]` for lists, `map[k:v]` for maps
/// (keys sorted), and `<no value>` for null (which stands for what Go would have as a nil
/// map, slice or pointer, or a map's missing key).
fn print_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("<no value>"),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => out.push_str(s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_value(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            out.push_str("map[");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                print_value(&o[k], out);
            }
            out.push(']');
        }
    }
}

fn to_text(v: &Value) -> String {
    let mut s = String::new();
    print_value(v, &mut s);
    s
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// The bytes `v` holds, counted up to `limit` (a larger value stops the count there).
fn size_up_to(v: &Value, limit: usize) -> usize {
    match v {
        Value::String(s) => s.len() + 8,
        Value::Array(a) => {
            let mut n = 8;
            for x in a {
                n += size_up_to(x, limit.saturating_sub(n));
                if n > limit {
                    break;
                }
            }
            n
        }
        Value::Object(o) => {
            let mut n = 8;
            for (k, x) in o {
                n += k.len() + size_up_to(x, limit.saturating_sub(n));
                if n > limit {
                    break;
                }
            }
            n
        }
        _ => 8,
    }
}

impl State<'_> {
    /// Charges a value made during the rendering against [`MAX_WORK`].
    fn made(&mut self, v: Value) -> Result<Value, TemplateError> {
        self.work += size_up_to(&v, MAX_WORK.saturating_sub(self.work));
        if self.work > MAX_WORK {
            return err(format!(
                "evaluation makes more than {MAX_WORK} bytes of values"
            ));
        }
        Ok(v)
    }

    fn step(&mut self) -> Result<(), TemplateError> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return err(format!("evaluation takes more than {MAX_STEPS} steps"));
        }
        if self.out.len() > MAX_OUTPUT {
            return err(format!("output larger than {MAX_OUTPUT} bytes"));
        }
        Ok(())
    }

    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<(), TemplateError> {
        for node in nodes {
            self.step()?;
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.vars.is_empty() {
                        print_value(&v, &mut self.out);
                    }
                }
                Node::If(p, body, otherwise) => {
                    let mark = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    let r = self.walk(if truth(&v) { body } else { otherwise }, dot);
                    self.vars.truncate(mark);
                    r?;
                }
                Node::With(p, body, otherwise) => {
                    let mark = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    let r = if truth(&v) {
                        self.walk(body, &v)
                    } else {
                        self.walk(otherwise, dot)
                    };
                    self.vars.truncate(mark);
                    r?;
                }
                Node::Range(p, body, otherwise) => {
                    let mark = self.vars.len();
                    let r = self.range(p, body, otherwise, dot);
                    self.vars.truncate(mark);
                    r?;
                }
            }
        }
        Ok(())
    }

    fn range(
        &mut self,
        p: &Pipe,
        body: &[Node],
        otherwise: &[Node],
        dot: &Value,
    ) -> Result<(), TemplateError> {
        let v = self.eval_cmds(&p.cmds, dot)?;
        let items: Vec<(Value, Value)> = match &v {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, x)| (Value::from(i), x.clone()))
                .collect(),
            Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                keys.into_iter()
                    .map(|k| (Value::String(k.clone()), o[k].clone()))
                    .collect()
            }
            Value::Null => Vec::new(),
            Value::Number(n) if n.as_u64().is_some_and(|n| n > MAX_STEPS) => {
                return err(format!("range over more than {MAX_STEPS} numbers"));
            }
            Value::Number(n) if n.as_u64().is_some() => (0..n.as_u64().unwrap_or(0))
                .map(|i| (Value::from(i), Value::from(i)))
                .collect(),
            other => return err(format!("range can't iterate over {}", kind(other))),
        };
        if items.is_empty() {
            return self.walk(otherwise, dot);
        }
        self.made(v)?;
        let mark = self.vars.len();
        for (key, item) in items {
            self.vars.truncate(mark);
            match p.vars.len() {
                0 => {}
                1 => self.vars.push((p.vars[0].clone(), item.clone())),
                _ => {
                    self.vars.push((p.vars[0].clone(), key));
                    self.vars.push((p.vars[1].clone(), item.clone()));
                }
            }
            self.walk(body, &item)?;
        }
        Ok(())
    }

    fn pipe(&mut self, p: &Pipe, dot: &Value) -> Result<Value, TemplateError> {
        let v = self.eval_cmds(&p.cmds, dot)?;
        for name in &p.vars {
            if p.declare {
                self.vars.push((name.clone(), v.clone()));
            } else {
                let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) else {
                    return err(format!("undefined variable {name}"));
                };
                slot.1 = v.clone();
            }
        }
        Ok(v)
    }

    fn eval_cmds(&mut self, cmds: &[Vec<Arg>], dot: &Value) -> Result<Value, TemplateError> {
        let mut last: Option<Value> = None;
        for cmd in cmds {
            last = Some(self.command(cmd, dot, last.take())?);
        }
        Ok(last.unwrap_or(Value::Null))
    }

    /// One command: a function call with arguments (and the previous command's value as
    /// the last argument), or a single value.
    fn command(
        &mut self,
        cmd: &[Arg],
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        self.step()?;
        if let Arg::Func(name) = &cmd[0] {
            let mut args = Vec::new();
            for a in &cmd[1..] {
                args.push(self.arg(a, dot)?);
            }
            args.extend(piped);
            let v = call(name, &args)?;
            return self.made(v);
        }
        // A field given arguments is a method call: `.Label "k"` looks the key up.
        if cmd.len() > 1 || piped.is_some() {
            let target = self.arg(&cmd[0], dot)?;
            let mut args = Vec::new();
            for a in &cmd[1..] {
                args.push(self.arg(a, dot)?);
            }
            args.extend(piped);
            match (&target, &args[..]) {
                (Value::Object(_), [Value::String(_)]) => {
                    return call("index", &[target, args[0].clone()]);
                }
                // In a header row the method's field holds its column name.
                (Value::String(_), [_]) => return Ok(target),
                _ => {}
            }
            return err(format!("can't give arguments to {}", describe_arg(&cmd[0])));
        }
        self.arg(&cmd[0], dot)
    }

    fn arg(&mut self, a: &Arg, dot: &Value) -> Result<Value, TemplateError> {
        match a {
            Arg::Dot => self.made(dot.clone()),
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Func(name) => call(name, &[]),
            Arg::Field(names) => {
                let hidden = if std::ptr::eq(dot, self.root) {
                    self.hidden
                } else {
                    None
                };
                let v = fields(dot, names, hidden)?;
                self.made(v)
            }
            Arg::Var(name, names) => {
                let Some((_, v)) = self.vars.iter().rev().find(|(n, _)| n == name) else {
                    return err(format!("undefined variable {name}"));
                };
                let hidden = if name == "$" { self.hidden } else { None };
                let v = fields(v, names, hidden)?;
                self.made(v)
            }
            Arg::Sub(p, names) => {
                let v = self.eval_cmds(&p.cmds, dot)?;
                fields(&v, names, None)
            }
        }
    }
}

fn describe_arg(a: &Arg) -> String {
    match a {
        Arg::Field(f) => format!(".{}", f.join(".")),
        Arg::Var(n, f) if f.is_empty() => n.clone(),
        Arg::Var(n, f) => format!("{n}.{}", f.join(".")),
        Arg::Dot => ".".into(),
        _ => "a value".into(),
    }
}

/// The fields of the rows that are maps in Docker's types.
const MAP_FIELDS: &[&str] = &["Labels", "Label", "ExposedPorts", "Volumes", "Annotations"];

/// Follows `.A.B` from `v`; a name that is not there is an error listing the names that are.
fn fields(v: &Value, names: &[String], hidden: Option<&Value>) -> Result<Value, TemplateError> {
    // Walked by reference: only the value reached is copied.
    const NULL: Value = Value::Null;
    let mut cur = v;
    for (i, name) in names.iter().enumerate() {
        let path = format!(".{}", names[..=i].join("."));
        // Docker's maps (labels, ports, volumes) are Go maps, not structs: a key they lack,
        // or a key of a map that is nil, is no value rather than an error.
        if i > 0 && MAP_FIELDS.contains(&names[i - 1].as_str()) {
            cur = cur.get(name).unwrap_or(&NULL);
            continue;
        }
        let next = match cur {
            Value::Object(o) => o.get(name).or_else(|| {
                if i == 0 {
                    hidden.and_then(|h| h.get(name))
                } else {
                    None
                }
            }),
            Value::Null => return err(format!("can't evaluate {path}: its parent is nil")),
            other => {
                return err(format!(
                    "can't evaluate field {name} in {path}: a {} has no fields",
                    kind(other)
                ));
            }
        };
        match next {
            Some(n) => cur = n,
            None => {
                let mut known: Vec<&String> = cur
                    .as_object()
                    .map(|o| o.keys().collect())
                    .unwrap_or_default();
                if let (0, Some(Value::Object(h))) = (i, hidden) {
                    known.extend(h.keys());
                }
                known.sort();
                let known: Vec<&str> = known.iter().take(40).map(|s| s.as_str()).collect();
                return err(format!(
                    "can't evaluate field {name} in {path}: no such field (fields: {})",
                    known.join(", ")
                ));
            }
        }
    }
    Ok(cur.clone())
}

fn want_args(name: &str, args: &[Value], n: usize) -> Result<(), TemplateError> {
    if args.len() != n {
        return err(format!(
            "{name} takes {n} argument{}, given {}",
            if n == 1 { "" } else { "s" },
            args.len()
        ));
    }
    Ok(())
}

fn as_int(name: &str, v: &Value) -> Result<i64, TemplateError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| TemplateError(format!("{name}: {n} is not an integer"))),
        Value::String(s) => s
            .parse()
            .map_err(|_| TemplateError(format!("{name}: {s:?} is not an integer"))),
        other => err(format!("{name}: a {} is not an integer", kind(other))),
    }
}

fn compare(name: &str, a: &Value, b: &Value) -> Result<std::cmp::Ordering, TemplateError> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            Ok(x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal))
        }
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => err(format!(
            "{name}: can't compare a {} with a {}",
            kind(a),
            kind(b)
        )),
    }
}

/// Go's `strings.Title`: the first letter of each word upper-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

fn call(name: &str, args: &[Value]) -> Result<Value, TemplateError> {
    let text = |i: usize| to_text(&args[i]);
    Ok(match name {
        "json" => {
            want_args(name, args, 1)?;
            Value::String(serde_json::to_string(&args[0]).unwrap_or_default())
        }
        "join" => {
            want_args(name, args, 2)?;
            match &args[0] {
                Value::Array(a) => {
                    Value::String(a.iter().map(to_text).collect::<Vec<_>>().join(&text(1)))
                }
                Value::Null => Value::String(String::new()),
                other => return err(format!("join: a {} is not a list", kind(other))),
            }
        }
        "split" => {
            want_args(name, args, 2)?;
            let sep = text(1);
            if sep.is_empty() {
                Value::Array(text(0).chars().map(|c| Value::String(c.into())).collect())
            } else {
                Value::Array(
                    text(0)
                        .split(&sep)
                        .map(|s| Value::String(s.into()))
                        .collect(),
                )
            }
        }
        "lower" => {
            want_args(name, args, 1)?;
            Value::String(text(0).to_lowercase())
        }
        "upper" => {
            want_args(name, args, 1)?;
            Value::String(text(0).to_uppercase())
        }
        "title" => {
            want_args(name, args, 1)?;
            Value::String(title(&text(0)))
        }
        "pad" => {
            want_args(name, args, 3)?;
            let (l, r) = (as_int(name, &args[1])?, as_int(name, &args[2])?);
            if !(0..=1024).contains(&l) || !(0..=1024).contains(&r) {
                return err("pad: widths must be 0 to 1024");
            }
            Value::String(format!(
                "{}{}{}",
                " ".repeat(l as usize),
                text(0),
                " ".repeat(r as usize)
            ))
        }
        "truncate" => {
            want_args(name, args, 2)?;
            let n = as_int(name, &args[1])?.max(0) as usize;
            Value::String(text(0).chars().take(n).collect())
        }
        "len" => {
            want_args(name, args, 1)?;
            Value::from(match &args[0] {
                Value::String(s) => s.chars().count(),
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                Value::Null => 0,
                other => return err(format!("len of a {}", kind(other))),
            })
        }
        "index" => {
            if args.is_empty() {
                return err("index takes at least 1 argument");
            }
            let mut cur = args[0].clone();
            for key in &args[1..] {
                cur = match (&cur, key) {
                    (Value::Array(a), k) => {
                        let i = as_int(name, k)?;
                        match usize::try_from(i).ok().and_then(|i| a.get(i)) {
                            Some(v) => v.clone(),
                            None => {
                                return err(format!(
                                    "index out of range: {i} (the list has {})",
                                    a.len()
                                ));
                            }
                        }
                    }
                    // A missing key is Go's zero value for a map of strings.
                    (Value::Object(o), k) => o
                        .get(&to_text(k))
                        .cloned()
                        .unwrap_or_else(|| Value::String(String::new())),
                    // A nil map gives the zero value too; a nil list has no index.
                    (Value::Null, Value::String(_)) => Value::String(String::new()),
                    (Value::Null, k) => {
                        return err(format!(
                            "index out of range: {} (the list is empty)",
                            to_text(k)
                        ));
                    }
                    (other, _) => return err(format!("can't index a {}", kind(other))),
                };
            }
            cur
        }
        "print" | "println" => {
            let mut s = String::new();
            for (i, a) in args.iter().enumerate() {
                // Go's Print puts spaces only between operands that are not strings.
                if i > 0 && (name == "println" || (!a.is_string() && !args[i - 1].is_string())) {
                    s.push(' ');
                }
                print_value(a, &mut s);
            }
            if name == "println" {
                s.push('\n');
            }
            Value::String(s)
        }
        "printf" => {
            if args.is_empty() {
                return err("printf takes a format");
            }
            Value::String(printf(&text(0), &args[1..])?)
        }
        "eq" | "ne" => {
            if args.len() < 2 {
                return err(format!("{name} takes at least 2 arguments"));
            }
            let same = |a: &Value, b: &Value| match (a, b) {
                (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
                _ => a == b,
            };
            let eq = args[1..].iter().any(|b| same(&args[0], b));
            Value::Bool(if name == "eq" { eq } else { !eq })
        }
        "lt" | "le" | "gt" | "ge" => {
            want_args(name, args, 2)?;
            let o = compare(name, &args[0], &args[1])?;
            Value::Bool(match name {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        "not" => {
            want_args(name, args, 1)?;
            Value::Bool(!truth(&args[0]))
        }
        "and" => {
            if args.is_empty() {
                return err("and takes at least 1 argument");
            }
            args.iter()
                .find(|a| !truth(a))
                .unwrap_or(&args[args.len() - 1])
                .clone()
        }
        "or" => {
            if args.is_empty() {
                return err("or takes at least 1 argument");
            }
            args.iter()
                .find(|a| truth(a))
                .unwrap_or(&args[args.len() - 1])
                .clone()
        }
        _ => return err(format!("function {name:?} not defined")),
    })
}

/// Go's `printf` for the verbs templates use: `%s %v %d %q %%`, with an optional width
/// (`%-10s` pads on the right) and, for `%s` and `%v`, a precision (`%.12s` cuts).
fn printf(format: &str, args: &[Value]) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next = args.iter();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut left = false;
        if chars.peek() == Some(&'-') {
            left = true;
            chars.next();
        }
        let mut width = 0usize;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            width = (width * 10 + d as usize).min(1024);
            chars.next();
        }
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = 0usize;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                p = (p * 10 + d as usize).min(1 << 20);
                chars.next();
            }
            precision = Some(p);
        }
        let verb = chars.next();
        if verb == Some('%') {
            out.push('%');
            continue;
        }
        let Some(arg) = next.next() else {
            return err("printf: too few arguments");
        };
        let s = match (verb, precision) {
            (Some('s' | 'v'), Some(p)) => to_text(arg).chars().take(p).collect(),
            (Some('s' | 'v' | 'd'), _) => to_text(arg),
            (Some('q'), _) => serde_json::to_string(&to_text(arg)).unwrap_or_default(),
            (other, _) => {
                return err(format!(
                    "printf: verb %{} not supported",
                    other.unwrap_or(' ')
                ));
            }
        };
        if left {
            let _ = write!(out, "{s:<width$}");
        } else {
            let _ = write!(out, "{s:>width$}");
        }
    }
    Ok(out)
}

/// `ps` and `images` in Docker print label maps as `k=v,k2=v2` (keys sorted).
pub fn labels_text(labels: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = labels.keys().collect();
    keys.sort();
    keys.iter()
        .map(|k| format!("{k}={}", labels[*k].as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data() -> Value {
        json!({
            "Id": "sha256:0123",
            "RepoTags": ["busybox:latest", "busybox:1.36"],
            "RepoDigests": ["localhost:5000/busybox@sha256:aaaa"],
            "Architecture": "amd64",
            "Size": 4261234,
            "Config": {
                "Env": ["PATH=/usr/bin", "LANG=C"],
                "Labels": {"org.opencontainers.image.version": "1.36", "maintainer": "me"},
                "Cmd": null,
                "ExposedPorts": {"80/tcp": {}},
            },
            "Empty": [],
        })
    }

    fn render(t: &str) -> Result<String, TemplateError> {
        Template::parse(t)?.render(&data())
    }

    fn ok(t: &str) -> String {
        render(t).unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    #[test]
    fn docker_documented_forms() {
        // docker inspect's examples.
        assert_eq!(ok("{{.Id}}"), "sha256:0123");
        assert_eq!(
            ok("{{index .RepoDigests 0}}"),
            "localhost:5000/busybox@sha256:aaaa"
        );
        assert_eq!(ok("{{.Config.Env}}"), "[PATH=/usr/bin LANG=C]");
        assert_eq!(ok("{{json .Config.Env}}"), r#"["PATH=/usr/bin","LANG=C"]"#);
        assert_eq!(
            ok(r#"{{index .Config.Labels "org.opencontainers.image.version"}}"#),
            "1.36"
        );
        assert_eq!(
            ok("{{range $p, $conf := .Config.ExposedPorts}} {{$p}} {{end}}"),
            " 80/tcp "
        );
        assert_eq!(
            ok("{{range .RepoTags}}{{.}}\n{{end}}"),
            "busybox:latest\nbusybox:1.36\n"
        );
        assert_eq!(
            ok(r#"{{join .RepoTags ","}}"#),
            "busybox:latest,busybox:1.36"
        );
        assert_eq!(ok("{{json .Architecture}}"), "\"amd64\"");
        assert_eq!(ok("{{upper .Architecture}}"), "AMD64");
        assert_eq!(
            ok(r#"{{lower "ABC"}} {{title "hello world"}}"#),
            "abc Hello World"
        );
        assert_eq!(ok("{{len .RepoTags}}"), "2");
        assert_eq!(ok("{{println .Architecture}}x"), "amd64\nx");
        assert_eq!(ok(r#"{{split "a:b:c" ":"}}"#), "[a b c]");
        assert_eq!(ok(r#"{{pad "x" 1 2}}|"#), " x  |");
        assert_eq!(ok(r#"{{truncate "abcdef" 3}}"#), "abc");
        assert_eq!(ok("{{.Architecture | upper}}"), "AMD64");
        assert_eq!(ok("{{(index .RepoTags 1)}}"), "busybox:1.36");
        assert_eq!(
            ok(r#"{{printf "%s-%d" .Architecture .Size}}"#),
            "amd64-4261234"
        );
        assert_eq!(
            ok(r#"{{.Id | printf "%.8s"}}|{{printf "%-6s|%6s" "ab" "cd"}}"#),
            "sha256:0|ab    |    cd"
        );
        assert_eq!(ok("{{.Size}}"), "4261234");
        assert_eq!(
            ok("{{.Config.Labels}}"),
            "map[maintainer:me org.opencontainers.image.version:1.36]"
        );
        assert_eq!(ok("{{.Config.Cmd}}"), "<no value>");
        // Maps (labels) are Go maps: a missing key is no value, and false.
        assert_eq!(ok("{{.Config.Labels.maintainer}}"), "me");
        assert_eq!(ok("{{.Config.Labels.none}}"), "<no value>");
        assert_eq!(ok("{{if .Config.Labels.none}}y{{else}}n{{end}}"), "n");
        assert!(
            render("{{.Config.Cmd.x}}").is_err(),
            "a nil list has no fields"
        );
    }

    #[test]
    fn json_of_the_whole_row() {
        let out = ok("{{json .}}");
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, data());
    }

    #[test]
    fn conditionals_and_variables() {
        assert_eq!(ok("{{if .RepoTags}}yes{{else}}no{{end}}"), "yes");
        assert_eq!(ok("{{if .Empty}}yes{{else}}no{{end}}"), "no");
        assert_eq!(
            ok(
                r#"{{if eq .Architecture "arm64"}}a{{else if eq .Architecture "amd64"}}b{{else}}c{{end}}"#
            ),
            "b"
        );
        assert_eq!(ok("{{range .Empty}}x{{else}}none{{end}}"), "none");
        assert_eq!(ok("{{with .Config}}{{len .Env}}{{end}}"), "2");
        assert_eq!(
            ok("{{$a := .Architecture}}{{$a}}-{{$.Size}}"),
            "amd64-4261234"
        );
        assert_eq!(
            ok("{{range $i, $t := .RepoTags}}{{$i}}={{$t}};{{end}}"),
            "0=busybox:latest;1=busybox:1.36;"
        );
        assert_eq!(
            ok("{{range .RepoTags}}{{$.Architecture}}{{end}}"),
            "amd64amd64"
        );
        assert_eq!(ok("{{if and .RepoTags (not .Empty)}}y{{end}}"), "y");
        assert_eq!(ok("a {{- /* note */ -}} b"), "ab");
        assert_eq!(ok("a  {{- .Architecture -}}  b"), "aamd64b");
        assert_eq!(ok("{{`raw\\n`}}"), "raw\\n");
    }

    #[test]
    fn missing_fields_and_bad_templates_are_errors() {
        let e = render("{{.Missing}}").unwrap_err().to_string();
        assert!(
            e.contains("Missing") && e.contains("fields: Architecture"),
            "{e}"
        );
        let e = render("{{.Config.Nope}}").unwrap_err().to_string();
        assert!(e.contains(".Config.Nope"), "{e}");
        assert!(
            render("{{index .RepoTags 5}}")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        assert!(render("{{nofunc .Id}}").is_err());
        assert!(render("{{if .Id}}x").is_err());
        assert!(render("{{end}}").is_err());
        assert!(render("{{.Id").is_err());
        assert!(render("{{\"abc}}").is_err());
        assert!(render("{{$x}}").is_err());
        assert!(render("{{.Id.Sub}}").is_err());
        // A map's missing key read with index is empty, as Go's zero value.
        assert_eq!(ok(r#"[{{index .Config.Labels "none"}}]"#), "[]");
    }

    #[test]
    fn formats() {
        assert!(matches!(Format::parse("table").unwrap(), Format::Table));
        assert!(matches!(Format::parse("json").unwrap(), Format::Json));
        let Format::Template { template, table } =
            Format::parse(r"table {{.Id}}\t{{.Size}}").unwrap()
        else {
            panic!()
        };
        assert!(table);
        assert_eq!(template.render(&data()).unwrap(), "sha256:0123\t4261234");
    }

    #[test]
    fn bounded_against_hostile_templates_and_data() {
        assert!(Template::parse(&"x".repeat(MAX_TEMPLATE + 1)).is_err());
        let deep = "{{if .Id}}".repeat(MAX_NESTING + 1) + &"{{end}}".repeat(MAX_NESTING + 1);
        assert!(Template::parse(&deep).is_err());
        let parens = "{{".to_owned()
            + &"(".repeat(MAX_NESTING + 2)
            + ".Id"
            + &")".repeat(MAX_NESTING + 2)
            + "}}";
        assert!(Template::parse(&parens).is_err());
        // Nested ranges over a long list: stopped by the step or output bound, not run out.
        let list: Vec<Value> = (0..200).map(|i| Value::from("x".repeat(i))).collect();
        let big = json!({ "L": list });
        let t = Template::parse(
            "{{range .L}}{{range $.L}}{{range $.L}}{{range $.L}}{{.}}{{end}}{{end}}{{end}}{{end}}",
        )
        .unwrap();
        assert!(t.render(&big).is_err());
        // A range over a huge number, and a value doubled in a variable, are stopped at
        // once: neither prints anything the output bound would see.
        let t = Template::parse("{{range 100000000000}}{{end}}").unwrap();
        assert!(t.render(&json!({})).is_err());
        let doubling =
            "{{$x := \"abcdefgh\"}}".to_owned() + &"{{$x = printf \"%s%s\" $x $x}}".repeat(40);
        let e = Template::parse(&doubling)
            .unwrap()
            .render(&json!({}))
            .unwrap_err();
        assert!(e.0.contains("bytes of values"), "{e}");
        // Image data read through `$` inside a range costs the field read, not a copy of
        // the whole data each time: 20,000 entries of a large config render at once.
        let env: Vec<Value> = (0..20_000)
            .map(|i| Value::from(format!("K{i}=v{i}")))
            .collect();
        let image = json!({ "Id": "sha256:1", "Config": { "Env": env } });
        let t = Template::parse("{{range .Config.Env}}{{if $.Id}}{{end}}{{end}}").unwrap();
        let (out, work) = t.render_counting(&image);
        assert_eq!(out.unwrap(), "");
        assert!(work < 4 << 20, "{work} bytes of values made");
        // Text from an image never reaches the output raw.
        let hostile =
            json!({ "Name": "a\u{1b}]52;c;x\u{7}b\u{9b}\u{202e}", "K": {"\u{1b}[2J": "v"} });
        let t =
            Template::parse("{{.Name}} {{json .}} {{range $k, $v := .K}}{{$k}}{{end}}\n").unwrap();
        let out = t.render(&hostile).unwrap();
        assert!(
            !out.trim_end_matches('\n')
                .chars()
                .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)),
            "{out:?}"
        );
    }
}
