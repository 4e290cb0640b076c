//! Credentials in URLs, hidden wherever a build shows or stores text. In: any text (an
//! instruction, a history entry, an error message). Out: the same text with the userinfo of
//! every `scheme://userinfo@host` replaced by `xxxxx`.
//!
//! BuildKit keeps the user name and hides the password; berth hides both, since a user name
//! alone is often a token (`https://TOKEN@host/file`).

use std::borrow::Cow;

const HIDDEN: &str = "xxxxx";

/// `text` with the userinfo of every URL in it hidden.
pub fn url_credentials(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        let scheme_ok = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        let authority_len = rest[authority_start..]
            .find(|c: char| {
                matches!(c, '/' | '?' | '#') || c.is_whitespace() || "\"'<>`".contains(c)
            })
            .unwrap_or(rest.len() - authority_start);
        let authority = &rest[authority_start..authority_start + authority_len];
        out.push_str(&rest[..authority_start]);
        match authority.rfind('@') {
            Some(userinfo_end) if scheme_ok => {
                out.push_str(HIDDEN);
                out.push_str(&authority[userinfo_end..]);
                changed = true;
            }
            _ => out.push_str(authority),
        }
        rest = &rest[authority_start + authority_len..];
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_hidden_and_the_rest_kept() {
        let cases = [
            (
                "ADD http://user:pass@host/f /x",
                "ADD http://xxxxx@host/f /x",
            ),
            (
                "ADD https://TOKEN@host:8443/a?b=c#d /",
                "ADD https://xxxxx@host:8443/a?b=c#d /",
            ),
            ("http://a:b@h", "http://xxxxx@h"),
            (
                "x http://a:b@h y https://c@i/z",
                "x http://xxxxx@h y https://xxxxx@i/z",
            ),
            ("\"http://u:p@h\"", "\"http://xxxxx@h\""),
            ("http://u:p@ss@h/", "http://xxxxx@h/"),
            ("http://h/path@notuser", "http://h/path@notuser"),
            ("http://h/?q=a@b", "http://h/?q=a@b"),
            ("no url here", "no url here"),
            ("://a:b@h", "://a:b@h"),
            ("mailto:a@b", "mailto:a@b"),
            ("ADD http://ü:ß@h/ /", "ADD http://xxxxx@h/ /"),
        ];
        for (text, want) in cases {
            assert_eq!(url_credentials(text), want, "{text}");
        }
    }

    #[test]
    fn no_password_survives_in_any_shape() {
        // Passwords of every byte a URL's userinfo can hold, in several surroundings.
        let seps = ["", " ", "\n", "'", "\"", "(", "="];
        for seed in 0..500u32 {
            let password: String = (0..(seed % 17 + 4))
                .map(|i| {
                    let c = (seed.wrapping_mul(31).wrapping_add(i * 7)) % 94 + 33;
                    char::from_u32(c).unwrap()
                })
                .filter(|c| !"/?#@\"'<>`".contains(*c))
                .collect();
            if password.len() < 4 {
                continue;
            }
            let sep = seps[seed as usize % seps.len()];
            let text = format!("a{sep}https://user:{password}@registry:5000/x{sep}b");
            let shown = url_credentials(&text);
            assert!(!shown.contains(&password), "{text} -> {shown}");
            assert!(shown.contains("@registry:5000/x"), "{shown}");
        }
    }
}
