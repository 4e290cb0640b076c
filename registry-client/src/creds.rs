//! Credentials: Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`) and containers' `auth.json` (`$REGISTRY_AUTH_FILE`, else
//! `$XDG_RUNTIME_DIR/containers/auth.json`): `auths` entries (`auth` = base64 `user:pass`,
//! or `identitytoken`), `credHelpers` per registry and `credsStore` for all, through the
//! `docker-credential-<name>` protocol (`get`/`store`/`erase`, JSON on stdin and stdout).
//!
//! Written here (not `docker_credential`) because login and logout must write the file too,
//! with mode 0600 and atomically, and keep every other field of it untouched.
//!
//! A [`Credentials`] value never prints its secret: its `Debug` shows the user name only.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Map, Value};

/// A user name and a secret (a password, or an identity token with user `<token>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// An identity token (OAuth2 refresh token) rather than a password.
    pub fn is_identity_token(&self) -> bool {
        self.username == "<token>"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("reading {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("credential helper docker-credential-{helper}: {message}")]
    Helper { helper: String, message: String },
}

/// The key a registry has in `auths` (Docker's for Docker Hub).
pub fn auth_key(registry: &str) -> String {
    if registry == "docker.io"
        || registry == "index.docker.io"
        || registry == "registry-1.docker.io"
    {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.to_owned()
    }
}

/// `https://host:port/v1/` → `host:port` (Docker Hub's names → `docker.io`).
pub fn normalize_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        h => h.to_owned(),
    }
}

/// The files to read, in order: containers' auth.json first, then Docker's config.json.
pub fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(p));
    } else if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(PathBuf::from(d).join("containers/auth.json"));
    }
    files.push(docker_config_file());
    files
}

/// Where `login` writes: `$REGISTRY_AUTH_FILE` when set, else Docker's config.json.
pub fn write_target() -> PathBuf {
    match std::env::var_os("REGISTRY_AUTH_FILE") {
        Some(p) => PathBuf::from(p),
        None => docker_config_file(),
    }
}

fn docker_config_file() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".docker/config.json")
        }
    }
}

fn read_json(path: &PathBuf) -> Result<Option<Map<String, Value>>, CredentialError> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            Ok(_) => Err(CredentialError::File {
                path: path.clone(),
                message: "not a JSON object".into(),
            }),
            Err(e) => Err(CredentialError::File {
                path: path.clone(),
                message: e.to_string(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CredentialError::File {
            path: path.clone(),
            message: e.to_string(),
        }),
    }
}

fn helper(name: &str, action: &str, input: &[u8]) -> Result<Option<Vec<u8>>, CredentialError> {
    let err = |message: String| CredentialError::Helper {
        helper: name.to_owned(),
        message,
    };
    let mut child = Command::new(format!("docker-credential-{name}"))
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("cannot run it: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input)
        .map_err(|e| err(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if out.status.success() {
        return Ok(Some(out.stdout));
    }
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if text.contains("credentials not found") {
        return Ok(None);
    }
    // The helper's message may echo what it was given; keep only its first line.
    Err(err(format!(
        "{action} failed: {}",
        text.lines().next().unwrap_or("no message").trim()
    )))
}

fn from_helper(name: &str, registry: &str) -> Result<Option<Credentials>, CredentialError> {
    let Some(out) = helper(name, "get", auth_key(registry).as_bytes())? else {
        return Ok(None);
    };
    let v: Value = serde_json::from_slice(&out).map_err(|e| CredentialError::Helper {
        helper: name.to_owned(),
        message: format!("unreadable answer: {e}"),
    })?;
    let username = v["Username"].as_str().unwrap_or_default().to_owned();
    let secret = v["Secret"].as_str().unwrap_or_default().to_owned();
    Ok((!secret.is_empty()).then_some(Credentials { username, secret }))
}

fn from_auths(auths: &Map<String, Value>, registry: &str) -> Option<Credentials> {
    let entry = auths
        .iter()
        .find(|(k, _)| normalize_key(k) == normalize_key(registry))
        .map(|(_, v)| v)?;
    if let Some(token) = entry["identitytoken"].as_str().filter(|t| !t.is_empty()) {
        return Some(Credentials {
            username: "<token>".into(),
            secret: token.to_owned(),
        });
    }
    let auth = entry["auth"].as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some(Credentials {
        username: u.to_owned(),
        secret: p.to_owned(),
    })
}

/// The registries that have saved credentials or a credential helper in the auth files
/// (names only, normalized; files that cannot be read are passed over).
pub fn saved_registries() -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for file in auth_files() {
        let Ok(Some(json)) = read_json(&file) else {
            continue;
        };
        for key in ["auths", "credHelpers"] {
            if let Some(entries) = json.get(key).and_then(Value::as_object) {
                names.extend(entries.keys().map(|k| normalize_key(k)));
            }
        }
    }
    names.into_iter().collect()
}

/// The credentials for `registry` (`host[:port]`, `docker.io` for Docker Hub), if any.
pub fn lookup(registry: &str) -> Result<Option<Credentials>, CredentialError> {
    lookup_in(&auth_files(), registry)
}

/// [`lookup`] in these files, in order: the first that names the registry decides.
fn lookup_in(files: &[PathBuf], registry: &str) -> Result<Option<Credentials>, CredentialError> {
    for file in files {
        let Some(json) = read_json(file)? else {
            continue;
        };
        let helpers = json.get("credHelpers").and_then(Value::as_object);
        if let Some(name) = helpers
            .and_then(|h| {
                h.iter()
                    .find(|(k, _)| normalize_key(k) == normalize_key(registry))
            })
            .and_then(|(_, v)| v.as_str())
        {
            return from_helper(name, registry);
        }
        if let Some(c) = json
            .get("auths")
            .and_then(Value::as_object)
            .and_then(|a| from_auths(a, registry))
        {
            return Ok(Some(c));
        }
        if let Some(store) = json.get("credsStore").and_then(Value::as_str)
            && let Some(c) = from_helper(store, registry)?
        {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Replaces the credentials file: a temporary file with a random name beside it, created
/// `O_EXCL` and `0600` (a name another user planted in a shared directory is never followed,
/// truncated or reused), written, synced, then renamed over `path` (a symlink planted at
/// `path` is replaced, not followed). Missing parent directories are made `0700`.
fn write_json(path: &PathBuf, json: &Map<String, Value>) -> Result<(), CredentialError> {
    let err = |e: std::io::Error| CredentialError::File {
        path: path.clone(),
        message: e.to_string(),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".berth-credentials-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(err)?;
    let bytes = serde_json::to_vec_pretty(&Value::Object(json.clone())).expect("plain JSON");
    tmp.write_all(&bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// The credential helper the file names for `registry` (`credHelpers`, else `credsStore`).
fn helper_for(json: &Map<String, Value>, registry: &str) -> Option<String> {
    json.get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| normalize_key(k) == normalize_key(registry))
        })
        .and_then(|(_, v)| v.as_str())
        .or_else(|| json.get("credsStore").and_then(Value::as_str))
        .map(str::to_owned)
}

/// Saves credentials (`login`): through the file's credential helper for this registry or
/// its `credsStore` when it has one, else as `auths` in the file (mode 0600). Returns where
/// they went.
pub fn store(registry: &str, creds: &Credentials) -> Result<String, CredentialError> {
    let path = write_target();
    let mut json = read_json(&path)?.unwrap_or_default();
    let key = auth_key(registry);
    let helper_name = helper_for(&json, registry);
    if let Some(name) = helper_name {
        let input = serde_json::json!({"ServerURL": key, "Username": creds.username, "Secret": creds.secret});
        helper(&name, "store", input.to_string().as_bytes())?.ok_or_else(|| {
            CredentialError::Helper {
                helper: name.clone(),
                message: "store failed".into(),
            }
        })?;
        // Docker leaves an empty entry in auths so the registry is listed.
        let auths = json
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(a) = auths.as_object_mut() {
            a.insert(key, Value::Object(Map::new()));
        }
        write_json(&path, &json)?;
        return Ok(format!("the credential helper docker-credential-{name}"));
    }
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", creds.username, creds.secret));
    let auths = json
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let auths = auths.as_object_mut().expect("an object");
    auths.retain(|k, _| normalize_key(k) != normalize_key(registry));
    auths.insert(key, serde_json::json!({ "auth": auth }));
    write_json(&path, &json)?;
    Ok(path.display().to_string())
}

/// Removes saved credentials (`logout`); whether there were any.
pub fn erase(registry: &str) -> Result<bool, CredentialError> {
    let path = write_target();
    let Some(mut json) = read_json(&path)? else {
        return Ok(false);
    };
    let mut found = false;
    let helper_name = helper_for(&json, registry);
    if let Some(name) = helper_name {
        found |= helper(&name, "erase", auth_key(registry).as_bytes())?.is_some();
    }
    if let Some(auths) = json.get_mut("auths").and_then(Value::as_object_mut) {
        let before = auths.len();
        auths.retain(|k, _| normalize_key(k) != normalize_key(registry));
        found |= auths.len() != before;
    }
    write_json(&path, &json)?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_normalize_like_docker() {
        assert_eq!(auth_key("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(
            normalize_key("https://reg.example:5000"),
            "reg.example:5000"
        );
        assert_eq!(normalize_key("reg.example:5000"), "reg.example:5000");
    }

    #[test]
    fn auths_entries_decode() {
        let auths: Map<String, Value> = serde_json::from_str(
            r#"{"https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
                "ghcr.io": {"auth": "", "identitytoken": "tok"}}"#,
        )
        .unwrap();
        let c = from_auths(&auths, "docker.io").unwrap();
        assert_eq!((c.username.as_str(), c.secret.as_str()), ("user", "pa:ss"));
        let t = from_auths(&auths, "ghcr.io").unwrap();
        assert!(t.is_identity_token());
        assert_eq!(t.secret, "tok");
        assert!(from_auths(&auths, "quay.io").is_none());
        assert!(
            !format!("{c:?}").contains("pa:ss"),
            "Debug never shows the secret"
        );
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn auths_keys_match_in_any_of_dockers_spellings() {
        for key in [
            "reg.example:5000",
            "https://reg.example:5000",
            "http://reg.example:5000/v1/",
            "https://reg.example:5000/v2/",
        ] {
            let auths: Map<String, Value> =
                serde_json::from_value(serde_json::json!({ key: {"auth": b64("u:p")} })).unwrap();
            let c = from_auths(&auths, "reg.example:5000");
            assert_eq!(c.map(|c| c.secret), Some("p".into()), "{key}");
            // Another port, or the host without it, is another registry.
            assert!(from_auths(&auths, "reg.example").is_none(), "{key}");
            assert!(from_auths(&auths, "reg.example:5001").is_none(), "{key}");
        }
        let hub: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "registry-1.docker.io": {"auth": b64("hub:pw")}
        }))
        .unwrap();
        assert_eq!(from_auths(&hub, "docker.io").unwrap().username, "hub");
    }

    #[test]
    fn unusable_auths_entries_give_no_credentials() {
        let auths: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "no-colon": {"auth": b64("justauser")},
            "not-base64": {"auth": "%%%"},
            "not-utf8": {"auth": base64::engine::general_purpose::STANDARD.encode([0xff, b':', 0xfe])},
            "empty": {},
            "padded": {"auth": format!("  {}\n", b64("u:p:q"))},
            "empty-token": {"identitytoken": "", "auth": b64("u:p")},
        }))
        .unwrap();
        for r in ["no-colon", "not-base64", "not-utf8", "empty"] {
            assert!(from_auths(&auths, r).is_none(), "{r}");
        }
        // The first colon splits: a password may hold colons. Whitespace around is ignored.
        let c = from_auths(&auths, "padded").unwrap();
        assert_eq!((c.username.as_str(), c.secret.as_str()), ("u", "p:q"));
        // An empty identity token is no token: the password is used.
        let c = from_auths(&auths, "empty-token").unwrap();
        assert!(!c.is_identity_token());
        assert_eq!(c.secret, "p");
    }

    #[test]
    fn a_registrys_own_helper_comes_before_the_store_for_all() {
        let json: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "credHelpers": {"https://reg.example:5000": "own"},
            "credsStore": "all",
        }))
        .unwrap();
        assert_eq!(
            helper_for(&json, "reg.example:5000").as_deref(),
            Some("own")
        );
        assert_eq!(helper_for(&json, "other.example").as_deref(), Some("all"));
        assert_eq!(helper_for(&Map::new(), "reg.example:5000"), None);
    }

    #[test]
    fn the_first_file_that_names_the_registry_decides() {
        let dir = tempfile::tempdir().unwrap();
        let auth = dir.path().join("auth.json");
        let config = dir.path().join("config.json");
        let missing = dir.path().join("missing.json");
        let entry = |user: &str| serde_json::json!({ "auth": b64(&format!("{user}:pw")) });
        std::fs::write(
            &auth,
            serde_json::json!({"auths": {"both.example": entry("from-auth-json")}}).to_string(),
        )
        .unwrap();
        std::fs::write(
            &config,
            serde_json::json!({"auths": {
                "both.example": entry("from-config-json"),
                "second.example": entry("only-in-config"),
            }})
            .to_string(),
        )
        .unwrap();
        let files = [missing, auth.clone(), config.clone()];
        let user = |r: &str| lookup_in(&files, r).unwrap().map(|c| c.username);
        assert_eq!(user("both.example").as_deref(), Some("from-auth-json"));
        assert_eq!(user("second.example").as_deref(), Some("only-in-config"));
        assert_eq!(user("none.example"), None);
        // A file that is not a JSON object is an error naming it, not "no credentials".
        for bad in ["{not json", "[1, 2]"] {
            std::fs::write(&auth, bad).unwrap();
            let e = lookup_in(&files, "both.example").unwrap_err();
            assert!(
                matches!(&e, CredentialError::File { path, .. } if *path == auth),
                "{e}"
            );
        }
    }

    #[test]
    fn the_credentials_file_is_replaced_private_and_never_written_through_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "VICTIM").unwrap();
        let path = dir.path().join("new/dir/config.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let json: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"auths": {}, "kept": 1})).unwrap();
        write_json(&path, &json).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "VICTIM");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file(), "the link was replaced by a file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(read_json(&path).unwrap(), Some(json));
        // Missing parents are made private.
        let deep = dir.path().join("a/b/auth.json");
        write_json(&deep, &Map::new()).unwrap();
        let mode = std::fs::metadata(deep.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        // Nothing is left beside the file.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["config.json"]);
    }
}
