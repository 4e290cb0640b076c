//! `WWW-Authenticate` challenges (RFC 7235 §4.1, with the auth-param grammar of §2.1) and
//! the token-endpoint answers of the Docker registry token protocol.
//!
//! Written here rather than taken from `http-auth`: it is 100 lines, it must accept what
//! real registries send (several challenges in one header, unquoted and quoted values with
//! `\` escapes, `scope` lists), it is fuzzed (`fuzz/`) and it never panics on hostile input.

use std::collections::BTreeMap;

/// One challenge: a scheme (`Basic`, `Bearer`) and its parameters (names lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.i..].chars().next()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        Some(c)
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.i += 1;
        }
    }
    fn token(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(|c| is_tchar(c) || c == '/') {
            self.bump();
        }
        self.s[start..self.i].to_owned()
    }
    fn quoted(&mut self) -> Option<String> {
        // The opening quote is already consumed.
        let mut out = String::new();
        loop {
            match self.bump()? {
                '"' => return Some(out),
                '\\' => out.push(self.bump()?),
                c => out.push(c),
            }
        }
    }
    /// At `name=`: whether an auth-param starts here (else a new challenge does).
    fn at_param(&self) -> bool {
        let rest = &self.s[self.i..];
        let name_len = rest.find(|c: char| !is_tchar(c)).unwrap_or(rest.len());
        let after = rest[name_len..].trim_start_matches([' ', '\t']);
        // `abc==` is a token68 (trailing `=` padding), not `abc` = `=`.
        let value = after
            .strip_prefix('=')
            .map(|v| v.trim_start_matches([' ', '\t']));
        name_len > 0 && value.is_some_and(|v| !v.is_empty() && !v.starts_with(['=', ',']))
    }
}

/// Parses every challenge of a `WWW-Authenticate` header value. Malformed parts end the
/// parse; what was read before them is kept.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut c = Cursor { s: header, i: 0 };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        c.skip_ws();
        while c.peek() == Some(',') {
            c.bump();
            c.skip_ws();
        }
        if c.peek().is_none() {
            return out;
        }
        if !out.is_empty() && c.at_param() {
            // Another parameter of the current challenge.
        } else {
            let scheme = c.token();
            if scheme.is_empty() {
                return out;
            }
            out.push(Challenge {
                scheme,
                params: BTreeMap::new(),
            });
            c.skip_ws();
            if !c.at_param() {
                // token68 or nothing: skip to the next comma.
                while c.peek().is_some_and(|ch| ch != ',') {
                    c.bump();
                }
                continue;
            }
        }
        let name = c.token().to_ascii_lowercase();
        c.skip_ws();
        if c.bump() != Some('=') {
            return out;
        }
        c.skip_ws();
        let value = if c.peek() == Some('"') {
            c.bump();
            match c.quoted() {
                Some(v) => v,
                None => return out,
            }
        } else {
            c.token()
        };
        if let Some(last) = out.last_mut() {
            last.params.insert(name, value);
        }
        c.skip_ws();
        match c.peek() {
            Some(',') | None => {}
            _ => return out,
        }
    }
}

/// The token endpoint's answer (`token` or `access_token`, `expires_in` seconds,
/// `refresh_token` when asked with offline access).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
}

impl TokenResponse {
    pub fn bearer(&self) -> Option<&str> {
        [&self.token, &self.access_token]
            .into_iter()
            .filter_map(Option::as_deref)
            .find(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(h: &str) -> Challenge {
        let c = parse_challenges(h);
        assert_eq!(c.len(), 1, "{h}: {c:?}");
        c.into_iter().next().unwrap()
    }

    #[test]
    fn bearer_challenges_as_registries_send_them() {
        let c = one(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert!(c.is("bearer"));
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/busybox:pull"));
        let c = one(
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        let c = one("Basic realm=\"Registry Realm\"");
        assert!(c.is("Basic"));
        assert_eq!(c.param("realm"), Some("Registry Realm"));
    }

    #[test]
    fn several_challenges_spaces_escapes_and_tokens() {
        let cs = parse_challenges(
            r#"Basic realm="a b", Bearer realm = "x\"y" , error=insufficient_scope, Negotiate"#,
        );
        assert_eq!(cs.len(), 3, "{cs:?}");
        assert_eq!(cs[0].param("realm"), Some("a b"));
        assert_eq!(cs[1].param("realm"), Some("x\"y"));
        assert_eq!(cs[1].param("error"), Some("insufficient_scope"));
        assert!(cs[2].is("negotiate"));
        assert_eq!(one("Bearer").params.len(), 0);
        assert_eq!(one("Bearer abc123==").params.len(), 0);
    }

    #[test]
    fn quoted_commas_and_spaces_stay_in_the_value() {
        let cs = parse_challenges(
            r#"Bearer scope="repository:a/b:pull,push repository:c/d:pull",realm="https://r.example/token", Basic realm="x""#,
        );
        assert_eq!(cs.len(), 2, "{cs:?}");
        assert_eq!(
            cs[0].param("scope"),
            Some("repository:a/b:pull,push repository:c/d:pull")
        );
        assert_eq!(cs[0].param("realm"), Some("https://r.example/token"));
        assert!(cs[1].is("basic"));
        // An escaped backslash, and an escaped quote before a comma.
        let c = one(r#"Bearer realm="a\\b", service="x\",y""#);
        assert_eq!(c.param("realm"), Some("a\\b"));
        assert_eq!(c.param("service"), Some("x\",y"));
    }

    #[test]
    fn parameter_names_are_case_insensitive_and_values_are_kept_as_sent() {
        let c = one(r#"BEARER Realm="https://R.example/Token", SERVICE=Reg.Example"#);
        assert!(c.is("bearer") && c.is("Bearer"));
        assert_eq!(c.param("realm"), Some("https://R.example/Token"));
        assert_eq!(c.param("service"), Some("Reg.Example"));
        assert_eq!(c.param("Realm"), None, "names are looked up lowercased");
    }

    #[test]
    fn a_malformed_part_ends_the_parse_and_keeps_what_came_before() {
        // Junk after a value: the realm is kept, the service after the junk is not.
        let c = one(r#"Bearer realm="r" junk, service="s""#);
        assert_eq!(c.param("realm"), Some("r"));
        assert_eq!(c.param("service"), None);
        // An unterminated quoted value is dropped, the values before it kept.
        let c = one(r#"Bearer realm="r", service="unterminated"#);
        assert_eq!(c.param("realm"), Some("r"));
        assert_eq!(c.param("service"), None);
        // A name without `=` or value: not a parameter.
        let cs = parse_challenges("Bearer realm=, Basic realm=\"b\"");
        assert_eq!(cs[0].param("realm"), None, "{cs:?}");
        assert_eq!(cs[1].param("realm"), Some("b"), "{cs:?}");
        // Nothing that starts like a scheme: nothing at all.
        assert!(parse_challenges("=\"x\"").is_empty());
        assert!(parse_challenges(" , ,").is_empty());
    }

    #[test]
    fn token68_credentials_are_skipped_up_to_the_next_challenge() {
        let cs = parse_challenges(r#"Negotiate abc/+==, Bearer realm="r""#);
        assert_eq!(cs.len(), 2, "{cs:?}");
        assert!(cs[0].is("negotiate") && cs[0].params.is_empty());
        assert_eq!(cs[1].param("realm"), Some("r"));
    }

    fn token(json: &str) -> TokenResponse {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn token_responses_give_token_or_access_token() {
        assert_eq!(token(r#"{"token":"t"}"#).bearer(), Some("t"));
        assert_eq!(token(r#"{"access_token":"a"}"#).bearer(), Some("a"));
        assert_eq!(
            token(r#"{"token":"t","access_token":"a"}"#).bearer(),
            Some("t")
        );
        // An empty `token` does not hide the `access_token` (Docker takes either).
        assert_eq!(
            token(r#"{"token":"","access_token":"a"}"#).bearer(),
            Some("a")
        );
        assert_eq!(token(r#"{"token":""}"#).bearer(), None);
        assert_eq!(token("{}").bearer(), None);
        let t = token(
            r#"{"token":"t","expires_in":300,"refresh_token":"r","issued_at":"2024-01-01T00:00:00Z","other":1}"#,
        );
        assert_eq!(t.expires_in, Some(300));
        assert_eq!(t.refresh_token.as_deref(), Some("r"));
        // A lifetime that is not a whole number of seconds is not a token response.
        assert!(serde_json::from_str::<TokenResponse>(r#"{"token":"t","expires_in":-1}"#).is_err());
    }

    #[test]
    fn hostile_headers_do_not_panic() {
        for h in [
            "",
            ",",
            "=",
            "\"",
            "Bearer realm=\"unterminated",
            "Bearer realm=",
            "Bearer ,,,",
            "Bearer realm=\"é\\",
            "é",
            "Basic realm=a b c",
        ] {
            let _ = parse_challenges(h);
        }
    }
}
