//! The argument rule of each instruction (BuildKit's `line_parsers.go`): the text after the
//! keyword and flags in, the words of the node out.
//!
//! | rule | instructions |
//! |---|---|
//! | JSON array, else the whole string | RUN, CMD, ENTRYPOINT, SHELL |
//! | JSON array, else whitespace-separated | ADD, COPY, VOLUME |
//! | whitespace-separated | FROM, EXPOSE |
//! | the whole string | MAINTAINER, USER, WORKDIR, STOPSIGNAL |
//! | `name value` or `name=value ...` (quotes kept) | ENV, LABEL |
//! | words (quotes kept) | ARG |
//! | a type word, then JSON or string | HEALTHCHECK |
//! | one nested instruction | ONBUILD |
//! | nothing (the keyword is unknown) | anything else |

use super::Directives;
use super::ast::Node;

type Parsed = Result<(Option<Box<Node>>, bool), String>;

fn is_ws(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Splits `KEYWORD [--flags] rest` and applies the keyword's rule.
pub fn new_node_from_line(
    line: &str,
    d: &Directives,
    comments: Vec<String>,
) -> Result<Node, String> {
    let trimmed = line.trim();
    let (cmd, rest) = match trimmed.find(is_ws) {
        Some(i) => (&trimmed[..i], trimmed[i..].trim_start_matches(is_ws)),
        None => (trimmed, ""),
    };
    let (flags, args) = if rest.is_empty() {
        (Vec::new(), "")
    } else {
        extract_flags(rest)
    };
    let keyword = cmd.to_lowercase();
    let (next, json) = dispatch(&keyword, args, d)?;
    let mut node = Node::default();
    node.value = keyword;
    node.original = line.to_owned();
    node.flags = flags;
    node.next = next;
    node.json = json;
    node.comments = comments;
    if node.word_count() > super::ast::MAX_WORDS {
        return Err(format!(
            "more than {} words in one instruction",
            super::ast::MAX_WORDS
        ));
    }
    Ok(node)
}

fn dispatch(keyword: &str, args: &str, d: &Directives) -> Parsed {
    match keyword {
        "run" | "cmd" | "entrypoint" | "shell" => parse_maybe_json(args),
        "add" | "copy" | "volume" => parse_maybe_json_to_list(args),
        "from" | "expose" => Ok((whitespace_delimited(args), false)),
        "maintainer" | "user" | "workdir" | "stopsignal" => Ok((string(args), false)),
        "env" => parse_name_val(args, "ENV", d),
        "label" => parse_name_val(args, "LABEL", d),
        "arg" => Ok((Node::chain(parse_words(args, d)), false)),
        "healthcheck" => parse_health_config(args),
        "onbuild" => parse_sub_command(args, d),
        _ => Ok((None, false)),
    }
}

/// Leading `--name[=value]` words (quotes and escapes processed) and the rest of the line.
pub fn extract_flags(line: &str) -> (Vec<String>, &str) {
    let bytes: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut quote = '\0';
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let mut phase = Phase::Spaces;
    let byte_at = |i: usize| line.char_indices().nth(i).map_or(line.len(), |(b, _)| b);
    let mut pos = 0;
    while pos <= bytes.len() {
        let ch = bytes.get(pos).copied().unwrap_or('\0');
        if phase == Phase::Spaces {
            if pos == bytes.len() {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            if ch != '-' || bytes.get(pos + 1) != Some(&'-') {
                return (words, &line[byte_at(pos)..]);
            }
            phase = Phase::Word;
        }
        if pos == bytes.len() {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            return (words, "");
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (words, line[byte_at(pos)..].trim_start());
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            let mut c = ch;
            if c == '\\' {
                if pos + 1 == bytes.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                c = bytes[pos];
            }
            word.push(c);
            pos += 1;
            continue;
        }
        // in a quote
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        let mut c = ch;
        if c == '\\' {
            if pos + 1 == bytes.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            c = bytes[pos];
        }
        word.push(c);
        pos += 1;
    }
    (words, "")
}

/// Whitespace-separated words, quotes and escapes kept as written.
pub fn parse_words(rest: &str, d: &Directives) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut quote = '\0';
    let (spaces, in_word, in_quote) = (0, 1, 2);
    let mut phase = spaces;
    let mut pos = 0;
    while pos <= chars.len() {
        let ch = chars.get(pos).copied().unwrap_or('\0');
        if phase == spaces {
            if pos == chars.len() {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = in_word;
        }
        if pos == chars.len() {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == in_word {
            if ch.is_whitespace() {
                phase = spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = in_quote;
            }
            let mut c = ch;
            if c == d.escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                word.push(c);
                pos += 1;
                c = chars[pos];
            }
            word.push(c);
            pos += 1;
            continue;
        }
        // in a quote
        if ch == quote {
            phase = in_word;
        }
        let mut c = ch;
        if c == d.escape && quote != '\'' {
            if pos + 1 == chars.len() {
                phase = in_word;
                pos += 1;
                continue;
            }
            word.push(c);
            pos += 1;
            c = chars[pos];
        }
        word.push(c);
        pos += 1;
    }
    words
}

fn whitespace_delimited(rest: &str) -> Option<Box<Node>> {
    if rest.is_empty() {
        return None;
    }
    Node::chain(
        rest.split(is_ws)
            .filter(|w| !w.is_empty())
            .map(str::to_owned),
    )
}

fn string(rest: &str) -> Option<Box<Node>> {
    (!rest.is_empty()).then(|| Box::new(Node::leaf(rest)))
}

enum JsonError {
    NotJson,
    NotStringArray,
}

fn parse_json(rest: &str) -> Result<Option<Box<Node>>, JsonError> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Err(JsonError::NotJson);
    }
    let values: Vec<serde_json::Value> =
        serde_json::from_str(rest).map_err(|_| JsonError::NotJson)?;
    let mut words = Vec::with_capacity(values.len());
    for v in values {
        match v {
            serde_json::Value::String(s) => words.push(s),
            _ => return Err(JsonError::NotStringArray),
        }
    }
    Ok(Node::chain(words))
}

const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

fn parse_maybe_json(rest: &str) -> Parsed {
    if rest.is_empty() {
        return Ok((None, false));
    }
    match parse_json(rest) {
        Ok(node) => Ok((node, true)),
        Err(JsonError::NotStringArray) => Err(NOT_STRING_ARRAY.into()),
        Err(JsonError::NotJson) => Ok((string(rest), false)),
    }
}

fn parse_maybe_json_to_list(rest: &str) -> Parsed {
    match parse_json(rest) {
        Ok(node) => Ok((node, true)),
        Err(JsonError::NotStringArray) => Err(NOT_STRING_ARRAY.into()),
        Err(JsonError::NotJson) => Ok((whitespace_delimited(rest), false)),
    }
}

/// `KEY value` (old form) or `KEY=value ...`; each pair becomes key, value, separator.
fn parse_name_val(rest: &str, key: &str, d: &Directives) -> Parsed {
    let words = parse_words(rest, d);
    if words.is_empty() {
        return Ok((None, false));
    }
    let mut out = Vec::new();
    if !words[0].contains('=') {
        let mut parts = rest.splitn(2, is_ws);
        let name = parts.next().unwrap_or_default();
        let value = parts
            .next()
            .map(|v| v.trim_start_matches(is_ws))
            .unwrap_or_default();
        if value.is_empty() {
            return Err(format!("{key} must have two arguments"));
        }
        out.extend([name.to_owned(), value.to_owned(), String::new()]);
        return Ok((Node::chain(out), false));
    }
    for word in words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {word:?}. Must be of the form: name=value"
            ));
        };
        out.extend([k.to_owned(), v.to_owned(), "=".to_owned()]);
    }
    Ok((Node::chain(out), false))
}

fn parse_health_config(rest: &str) -> Parsed {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((None, false));
    }
    let typ = &rest[..sep];
    let (cmd, json) = parse_maybe_json(rest[sep..].trim_start())?;
    let mut node = Node::leaf(typ);
    node.next = cmd;
    Ok((Some(Box::new(node)), json))
}

fn parse_sub_command(rest: &str, d: &Directives) -> Parsed {
    if rest.is_empty() {
        return Ok((None, false));
    }
    let child = new_node_from_line(rest, d, Vec::new())?;
    let json = child.json;
    let mut node = Node::default();
    node.children = vec![child];
    Ok((Some(Box::new(node)), json))
}
