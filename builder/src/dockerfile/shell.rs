//! Shell-word expansion as BuildKit's `shell.Lex` does it: a word and an environment in, the
//! expanded word ([`Lex::process_word`]) or words ([`Lex::process_words`]) out.
//!
//! Supports `$V ${V}`, `${V:-w} ${V-w} ${V:+w} ${V+w} ${V:?msg} ${V?msg}`, `${V#p} ${V##p}
//! ${V%p} ${V%%p}` (shell patterns with `*` and `?`), `${V/p/r} ${V//p/r}`, single quotes
//! (literal), double quotes (`$` expands; the escape character escapes `"`, `$` and itself)
//! and the escape character outside quotes. No crate implements these rules (DEPENDENCIES.md:
//! `shellexpand` passes 40 of 228 of BuildKit's vectors), so this is written from the rules and
//! checked against BuildKit's `envVarTest` and `wordsTest` corpora.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {reason}")]
pub struct ShellError {
    pub word: String,
    pub reason: String,
}

/// The lexer's settings.
#[derive(Debug, Clone)]
pub struct Lex {
    pub escape: char,
    /// Keep quote characters in the output (heredoc detection).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave `$UNSET` and `${UNSET…}` as written instead of expanding to "".
    pub skip_unset_env: bool,
    /// Treat quote characters as plain characters (the body of a heredoc whose delimiter is
    /// unquoted: variables and escapes are processed, quotes are text).
    pub skip_process_quotes: bool,
}

impl Lex {
    pub fn new(escape: char) -> Lex {
        Lex {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// Expands one word (quotes removed, variables expanded, no splitting).
    pub fn process_word(
        &self,
        word: &str,
        env: &HashMap<String, String>,
    ) -> Result<String, ShellError> {
        self.run(word, env).map(|(w, _)| w)
    }

    /// Expands and splits into words, as a shell would split an unquoted expansion.
    pub fn process_words(
        &self,
        word: &str,
        env: &HashMap<String, String>,
    ) -> Result<Vec<String>, ShellError> {
        self.run(word, env).map(|(_, ws)| ws)
    }

    fn run(
        &self,
        word: &str,
        env: &HashMap<String, String>,
    ) -> Result<(String, Vec<String>), ShellError> {
        let mut sw = ShellWord {
            chars: word.chars().collect(),
            pos: 0,
            env,
            lex: self.clone(),
            depth: 0,
        };
        sw.process_stop_on_any(&[], false)
            .map_err(|reason| ShellError {
                word: word.to_owned(),
                reason,
            })
    }
}

/// The word being built and the words split so far.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

struct ShellWord<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a HashMap<String, String>,
    lex: Lex,
    /// Expansions and quotes open around the current position.
    depth: usize,
}

/// Expansions nested deeper than this are refused: each level is a frame of the recursive
/// descent, and a Dockerfile must not be able to overflow berth's stack.
const MAX_NESTING: usize = 64;

type R<T> = Result<T, String>;

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes until one of `stops` (not consumed) or the end; with an empty `stops`, the
    /// end is the only stop, otherwise reaching it is an error.
    fn process_stop_on_any(
        &mut self,
        stops: &[char],
        raw_escapes: bool,
    ) -> R<(String, Vec<String>)> {
        if self.depth >= MAX_NESTING {
            return Err(format!("expansions nested more than {MAX_NESTING} deep"));
        }
        let saved = self.lex.raw_escapes;
        if raw_escapes {
            self.lex.raw_escapes = true;
        }
        self.depth += 1;
        let result = self.stop_on_any(stops);
        self.depth -= 1;
        self.lex.raw_escapes = saved;
        result
    }

    fn stop_on_any(&mut self, stops: &[char]) -> R<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stops.contains(&ch) {
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                    words.add_string(&value);
                }
                '\'' if !self.lex.skip_process_quotes => {
                    let value = self.process_single_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                '"' if !self.lex.skip_process_quotes => {
                    let value = self.process_double_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                _ => {
                    let mut ch = self.next().expect("peeked");
                    if ch == self.lex.escape {
                        if self.lex.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        match self.next() {
                            None => break,
                            Some(c) => ch = c,
                        }
                        words.add_raw_char(ch);
                    } else {
                        words.add_char(ch);
                    }
                    result.push(ch);
                }
            }
        }
        if !stops.is_empty() {
            return Err(format!(
                "unexpected end of statement while looking for matching {}",
                stops.iter().collect::<String>()
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> R<String> {
        let mut result = String::new();
        let open = self.next().expect("peeked quote");
        if self.lex.raw_quotes {
            result.push(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> R<String> {
        let mut result = String::new();
        let open = self.next().expect("peeked quote");
        if self.lex.raw_quotes {
            result.push(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(_) => {
                    let mut ch = self.next().expect("peeked");
                    if ch == self.lex.escape {
                        if self.lex.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = self.next().expect("peeked");
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// A `${…}` cut short by the end of the word is a missing `}`, whatever else failed.
    fn at_end_means_missing_brace(&self, e: String) -> String {
        if self.peek().is_none() {
            "syntax error: missing '}'".into()
        } else {
            e
        }
    }

    fn get_env(&self, name: &str) -> Option<&String> {
        self.env.get(name)
    }

    fn process_dollar(&mut self) -> R<String> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v.clone(),
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(ch) = self.next() else {
            return Err("syntax error: missing '}'".into());
        };
        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v.clone(),
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut modifier = ch;
                let mut chs = ch.to_string();
                let null_is_unset = ch == ':';
                if null_is_unset {
                    modifier = self.next().ok_or("syntax error: missing '}'")?;
                    chs.push(modifier);
                }
                let raw = modifier == '#' || modifier == '%';
                if null_is_unset && raw {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                if !matches!(modifier, '+' | '-' | '?' | '#' | '%') {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                let (word, _) = self
                    .process_stop_on_any(&['}'], raw)
                    .map_err(|e| self.at_end_means_missing_brace(e))?;
                self.next(); // '}'
                let value = self.get_env(&name).cloned();
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let unset_or_null =
                    value.is_none() || (null_is_unset && value.as_deref() == Some(""));
                match modifier {
                    '-' => Ok(if unset_or_null {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if unset_or_null { String::new() } else { word }),
                    '?' => {
                        if value.is_none() {
                            let msg = if word.is_empty() {
                                "is not allowed to be unset".to_owned()
                            } else {
                                word
                            };
                            return Err(format!("{name}: {msg}"));
                        }
                        if unset_or_null {
                            let msg = if word.is_empty() {
                                "is not allowed to be empty".to_owned()
                            } else {
                                word
                            };
                            return Err(format!("{name}: {msg}"));
                        }
                        Ok(value.unwrap_or_default())
                    }
                    _ => {
                        let (greedy, pattern) = match word.strip_prefix(modifier) {
                            Some(rest) => (true, rest.to_owned()),
                            None => (false, word),
                        };
                        let value = value.unwrap_or_default();
                        if modifier == '%' {
                            trim_suffix(&pattern, &value, greedy)
                        } else {
                            trim_prefix(&pattern, &value, greedy)
                        }
                    }
                }
            }
            '/' => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let (pattern, _) = self
                    .process_stop_on_any(&['/', '}'], true)
                    .map_err(|e| self.at_end_means_missing_brace(e))?;
                let mut replacement = String::new();
                if self.next() == Some('/') {
                    let (r, _) = self
                        .process_stop_on_any(&['}'], true)
                        .map_err(|e| self.at_end_means_missing_brace(e))?;
                    self.next();
                    replacement = r;
                }
                let value = self.get_env(&name).cloned();
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                let value = value.unwrap_or_default();
                let re = shell_pattern_regex(&pattern, true, false)
                    .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
                Ok(if replace_all {
                    re.replace_all(&value, regex::NoExpand(&replacement))
                        .into_owned()
                } else {
                    re.replace(&value, regex::NoExpand(&replacement))
                        .into_owned()
                })
            }
            other => Err(format!("unsupported modifier ({other}) in substitution")),
        }
    }

    /// A name: letters, digits and `_`; or all digits; or one special parameter.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

/// A shell pattern (`*`, `?`, `\` escaping `*`, `?` and `\`) as a regex; `}` and `/` may be
/// escaped inside `${}` and lose the backslash.
fn shell_pattern_regex(
    pattern: &str,
    greedy: bool,
    anchored: bool,
) -> Result<regex::Regex, String> {
    let mut out = String::new();
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                if matches!(chars.get(i), Some('}' | '/')) {
                    continue;
                }
                match chars.get(i) {
                    Some(&n @ ('*' | '?' | '\\')) => {
                        i += 1;
                        out.push_str(&regex::escape(&n.to_string()));
                    }
                    _ => return Err("unsupported escape sequence".into()),
                }
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    regex::RegexBuilder::new(&out)
        .dot_matches_new_line(true)
        .build()
        .map_err(|e| e.to_string())
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> R<String> {
    let re = shell_pattern_regex(pattern, greedy, true)
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_owned(),
        None => value.to_owned(),
    })
}

/// Reverses a pattern, keeping each `\x` escape pair in order.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            units.push(format!("\\{}", chars[i + 1]));
            i += 2;
        } else {
            units.push(chars[i].to_string());
            i += 1;
        }
    }
    units.reverse();
    units.concat()
}

/// `%`/`%%`: the shortest or longest matching suffix, by matching the reversed pattern
/// against the reversed value (regexes find leftmost matches only).
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> R<String> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let env = HashMap::new();
        let lex = Lex::new('\\');
        let nested = |n: usize| format!("{}y{}", "${x:-".repeat(n), "}".repeat(n));
        assert_eq!(lex.process_word(&nested(40), &env).unwrap(), "y");
        for word in [
            nested(100_000),
            format!("{}y{}", "\"${x:-".repeat(50_000), "}\"".repeat(50_000)),
        ] {
            let e = lex.process_word(&word, &env).unwrap_err();
            assert!(
                e.reason.contains("nested more than 64 deep"),
                "{}",
                e.reason
            );
        }
    }
}
