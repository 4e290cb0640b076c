//! Rust source text → tokens with their line numbers. Comments and the contents of string
//! and character literals are blanked first, so that neither a `crate::` in a doc comment nor
//! a `{` in a format string is read as code. Only what the module graph needs is kept:
//! identifiers, `::` and single punctuation characters.

/// A token: an identifier (`$crate` is one token, so it never reads as `crate`), `::`, or
/// one punctuation character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub line: usize,
}

/// The source with every comment and every literal's contents replaced by spaces; newlines
/// are kept so that line numbers still hold.
pub fn blank(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let end = if chars[i] == '/' && chars.get(i + 1) == Some(&'/') {
            chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |n| i + n)
        } else if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
            block_comment_end(&chars, i)
        } else if chars[i] == '"' {
            string_end(&chars, i + 1)
        } else if let Some(end) =
            raw_string_end(&chars, i).or_else(|| prefixed_string_end(&chars, i))
        {
            end
        } else if let Some(end) = char_literal_end(&chars, i) {
            end
        } else {
            out.push(chars[i]);
            i += 1;
            continue;
        };
        out.extend(
            chars[i..end]
                .iter()
                .map(|&c| if c == '\n' { '\n' } else { ' ' }),
        );
        i = end;
    }
    out
}

/// The end of a block comment opening at `start`; block comments nest.
fn block_comment_end(chars: &[char], start: usize) -> usize {
    let (mut depth, mut i) = (0, start);
    while i < chars.len() {
        if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// The end of a string whose contents start at `i` (past the opening quote).
fn string_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// The end of a raw string (`r"…"`, `r#"…"#`, and the `b`/`c` forms) starting at `i`.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    if is_ident(chars, i.checked_sub(1)) {
        return None;
    }
    let r = match (chars[i], chars.get(i + 1)) {
        ('r', _) => i,
        ('b' | 'c', Some('r')) => i + 1,
        _ => return None,
    };
    let hashes = chars[r + 1..].iter().take_while(|&&c| c == '#').count();
    let open = r + 1 + hashes;
    if chars.get(open) != Some(&'"') {
        return None;
    }
    let closes = |j: usize| {
        chars[j] == '"'
            && chars[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
    };
    let close = (open + 1..chars.len()).find(|&j| closes(j));
    Some(close.map_or(chars.len(), |j| j + 1 + hashes))
}

/// A byte or C string (`b"…"`, `c"…"`) starting at `i`: its end.
fn prefixed_string_end(chars: &[char], i: usize) -> Option<usize> {
    let prefixed = matches!(chars[i], 'b' | 'c') && chars.get(i + 1) == Some(&'"');
    (prefixed && !is_ident(chars, i.checked_sub(1))).then(|| string_end(chars, i + 2))
}

fn is_ident(chars: &[char], at: Option<usize>) -> bool {
    at.is_some_and(|i| chars[i].is_alphanumeric() || chars[i] == '_')
}

/// The end of a character literal (`'x'`, `'\n'`, `'\u{7f}'`) starting at `i`; a lifetime
/// (`'a`) is not one.
fn char_literal_end(chars: &[char], i: usize) -> Option<usize> {
    if chars[i] != '\'' {
        return None;
    }
    match chars.get(i + 1)? {
        '\\' => {
            // The escaped character itself may be a quote (`'\''`).
            let close = chars.get(i + 3..)?.iter().position(|&c| c == '\'')?;
            Some(i + 3 + close + 1)
        }
        _ if chars.get(i + 2) == Some(&'\'') => Some(i + 3),
        _ => None,
    }
}

/// The tokens of blanked source.
pub fn tokens(blanked: &str) -> Vec<Token> {
    let chars: Vec<char> = blanked.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_alphanumeric() || c == '_' || c == '$' {
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            i += 1;
        }
        let text: String = chars[start..i].iter().collect();
        // A raw identifier `r#name` is the identifier `name`.
        if text == "#" && out.last().is_some_and(|t: &Token| t.text == "r") {
            out.pop();
            continue;
        }
        out.push(Token { text, line });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(source: &str) -> Vec<String> {
        tokens(&blank(source)).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn comments_and_literals_are_blanked_keeping_lines() {
        let source =
            "a // crate::x\n/* crate::y /* nested */ still */ b\n\"crate::z {\" c\n'{' d 'e'\n";
        let blanked = blank(source);
        assert_eq!(blanked.lines().count(), 4);
        assert_eq!(texts(source), ["a", "b", "c", "d"]);
    }

    #[test]
    fn raw_strings_and_escapes_are_blanked() {
        let source =
            r####"x r#"a " crate::b"# y br"c" z "\"{" w '\'' v '\u{7b}' u b"{" t bar"s" s"####;
        assert_eq!(
            texts(source),
            ["x", "y", "z", "w", "v", "u", "t", "bar", "s"]
        );
    }

    #[test]
    fn lifetimes_stay_code() {
        assert_eq!(
            texts("fn f<'a>(x: &'a str) {}"),
            [
                "fn", "f", "<", "'", "a", ">", "(", "x", ":", "&", "'", "a", "str", ")", "{", "}"
            ]
        );
    }

    #[test]
    fn dollar_crate_is_one_token_and_paths_split_on_double_colons() {
        assert_eq!(texts("$crate::a::b"), ["$crate", "::", "a", "::", "b"]);
        assert_eq!(tokens(&blank("a\n\nb"))[1].line, 3);
    }
}
