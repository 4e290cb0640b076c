//! `RUN --mount=...`: BuildKit's mount specs parsed once, when the Dockerfile is, with
//! BuildKit's defaults (a bind by default, read-only unless `rw`; a cache's `id` is its
//! target; a secret's target is `/run/secrets/<id>`; an ssh socket's id is `default` and its
//! target `/run/buildkit/ssh_agent.N`, N its place among the step's ssh mounts). What each
//! becomes for the container is [`crate::exec::mounts`]'s.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// The spec as written (part of a RUN step's cache key).
    pub spec: String,
    pub kind: Kind,
    pub target: String,
    pub source: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub sharing: berth_store::CacheSharing,
    pub readonly: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub required: bool,
    pub size: Option<u64>,
    /// `type=secret,env=NAME`: the secret's value in the step's environment variable
    /// `NAME`; without a `target`, in the environment only (no file).
    pub env: Option<String>,
}

fn size(v: &str) -> Result<u64, String> {
    let lower = v.to_ascii_lowercase();
    let end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let n: u64 = lower[..end]
        .parse()
        .map_err(|_| format!("invalid size {v:?}"))?;
    let shift = match lower[end..].trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        u => return Err(format!("invalid size {v:?}: unknown unit {u:?}")),
    };
    Ok(n << shift)
}

/// An environment variable's name as a shell takes it: a letter or `_`, then letters, digits
/// and `_` (no `=`, which would set another variable's value).
fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl MountSpec {
    pub fn parse(spec: &str) -> Result<MountSpec, String> {
        let mut fields: BTreeMap<String, Option<String>> = BTreeMap::new();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = match part.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_owned())),
                None => (part.to_ascii_lowercase(), None),
            };
            fields.insert(k, v);
        }
        let get = |names: &[&str]| names.iter().find_map(|n| fields.get(*n).cloned().flatten());
        let flag = |name: &str| match fields.get(name) {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(v)) => match v.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(format!(
                    "--mount {spec:?}: {name}={v}: expected true or false"
                )),
            },
        };
        let kind = match get(&["type"]).as_deref().unwrap_or("bind") {
            "bind" => Kind::Bind,
            "cache" => Kind::Cache,
            "tmpfs" => Kind::Tmpfs,
            "secret" => Kind::Secret,
            "ssh" => Kind::Ssh,
            t => return Err(format!("--mount {spec:?}: unknown type {t:?}")),
        };
        for k in fields.keys() {
            let known = [
                "type",
                "target",
                "dst",
                "destination",
                "source",
                "src",
                "from",
                "id",
                "sharing",
                "readonly",
                "ro",
                "rw",
                "readwrite",
                "mode",
                "uid",
                "gid",
                "required",
                "size",
                "env",
            ];
            if !known.contains(&k.as_str()) {
                return Err(format!("--mount {spec:?}: unknown option {k:?}"));
            }
        }
        let id = get(&["id"]);
        let env = get(&["env"]);
        match (&env, kind) {
            (Some(name), Kind::Secret) if !valid_env_name(name) => {
                return Err(format!("--mount {spec:?}: invalid env name {name:?}"));
            }
            (Some(_), Kind::Secret) | (None, _) => {}
            (Some(_), _) => return Err(format!("--mount {spec:?}: env is for type=secret")),
        }
        let target = match (get(&["target", "dst", "destination"]), kind, &id) {
            (Some(t), _, _) => t,
            // A secret for the environment only has no file.
            (None, Kind::Secret, Some(_)) if env.is_some() => String::new(),
            (None, Kind::Secret, Some(id)) => format!("/run/secrets/{id}"),
            // Numbered once the step's mounts are known ([`number_ssh_targets`]).
            (None, Kind::Ssh, _) => String::new(),
            (None, Kind::Secret, None) if env.is_some() => {
                return Err(format!("--mount {spec:?}: the id is missing"));
            }
            _ => return Err(format!("--mount {spec:?}: the target is missing")),
        };
        let octal = |name: &str| {
            get(&[name])
                .map(|v| {
                    u32::from_str_radix(&v, 8)
                        .map_err(|_| format!("--mount {spec:?}: invalid {name} {v:?}"))
                })
                .transpose()
        };
        let number = |name: &str| {
            get(&[name])
                .map(|v| {
                    v.parse::<u32>()
                        .map_err(|_| format!("--mount {spec:?}: invalid {name} {v:?}"))
                })
                .transpose()
        };
        if kind == Kind::Ssh && get(&["source", "src"]).is_some() {
            return Err(format!("--mount {spec:?}: ssh does not support source"));
        }
        let rw = flag("rw")? || flag("readwrite")?;
        let ro = flag("readonly")? || flag("ro")?;
        Ok(MountSpec {
            spec: spec.to_owned(),
            kind,
            id: id.clone().or_else(|| match kind {
                Kind::Cache => Some(target.clone()),
                Kind::Secret => target.rsplit('/').next().map(str::to_owned),
                Kind::Ssh => Some("default".into()),
                _ => None,
            }),
            target,
            source: get(&["source", "src"]),
            // `from=` with no value is the build context, as in BuildKit.
            from: get(&["from"]).filter(|f| !f.is_empty()),
            sharing: match get(&["sharing"]).as_deref().unwrap_or("shared") {
                "shared" => berth_store::CacheSharing::Shared,
                "private" => berth_store::CacheSharing::Private,
                "locked" => berth_store::CacheSharing::Locked,
                s => return Err(format!("--mount {spec:?}: unknown sharing {s:?}")),
            },
            readonly: match kind {
                Kind::Bind => !rw,
                Kind::Secret | Kind::Ssh => true,
                _ => ro,
            },
            mode: octal("mode")?,
            uid: number("uid")?,
            gid: number("gid")?,
            required: flag("required")?,
            size: get(&["size"]).map(|v| size(&v)).transpose()?,
            env,
        })
    }
}

/// An ssh mount without a target gets `/run/buildkit/ssh_agent.N`, N its place among the
/// step's ssh mounts (as BuildKit's LLB).
pub fn number_ssh_targets(mounts: &mut [MountSpec]) {
    for (n, m) in mounts
        .iter_mut()
        .filter(|m| m.kind == Kind::Ssh)
        .enumerate()
    {
        if m.target.is_empty() {
            m.target = format!("/run/buildkit/ssh_agent.{n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_env_mounts_have_a_file_only_with_a_target() {
        let e = MountSpec::parse("type=secret,id=tok,env=TOKEN").unwrap();
        assert_eq!(e.env.as_deref(), Some("TOKEN"));
        assert_eq!(e.target, "");
        assert_eq!(e.id.as_deref(), Some("tok"));
        let both = MountSpec::parse("type=secret,id=tok,env=TOKEN,target=/t").unwrap();
        assert_eq!(
            (both.target.as_str(), both.env.as_deref()),
            ("/t", Some("TOKEN"))
        );
        let by_target = MountSpec::parse("type=secret,target=/s/tok,env=T").unwrap();
        assert_eq!(by_target.id.as_deref(), Some("tok"));
        assert!(MountSpec::parse("type=secret,env=T").is_err());
        assert!(MountSpec::parse("type=secret,id=a,env=A=B").is_err());
        assert!(MountSpec::parse("type=secret,id=a,env=").is_err());
        assert!(MountSpec::parse("type=cache,target=/c,env=T").is_err());
    }

    #[test]
    fn mount_specs_parse_with_buildkit_defaults() {
        let c = MountSpec::parse("type=cache,target=/root/.cache").unwrap();
        assert_eq!(c.kind, Kind::Cache);
        assert_eq!(c.id.as_deref(), Some("/root/.cache"));
        assert!(!c.readonly);
        let b = MountSpec::parse("target=/src,source=go.mod").unwrap();
        assert_eq!(b.kind, Kind::Bind);
        assert!(b.readonly);
        assert!(!MountSpec::parse("target=/src,rw").unwrap().readonly);
        let s = MountSpec::parse("type=secret,id=token,required").unwrap();
        assert_eq!(s.target, "/run/secrets/token");
        assert!(s.required);
        let t = MountSpec::parse("type=tmpfs,target=/t,size=64m").unwrap();
        assert_eq!(t.size, Some(64 << 20));
        let l = MountSpec::parse("type=cache,target=/c,sharing=locked,mode=0700,uid=5").unwrap();
        assert_eq!(l.sharing, berth_store::CacheSharing::Locked);
        assert_eq!((l.mode, l.uid), (Some(0o700), Some(5)));
        assert!(MountSpec::parse("type=bind").is_err());
        assert!(MountSpec::parse("type=cache,target=/c,bogus=1").is_err());
        assert!(MountSpec::parse("type=nope,target=/c").is_err());
    }

    #[test]
    fn ssh_mounts_default_to_the_default_id_and_numbered_sockets() {
        let mut m = vec![
            MountSpec::parse("type=ssh").unwrap(),
            MountSpec::parse("type=cache,target=/c").unwrap(),
            MountSpec::parse("type=ssh,id=work,target=/s,required,mode=0666,uid=5").unwrap(),
            MountSpec::parse("type=ssh,id=other").unwrap(),
        ];
        number_ssh_targets(&mut m);
        assert_eq!(m[0].id.as_deref(), Some("default"));
        assert_eq!(m[0].target, "/run/buildkit/ssh_agent.0");
        assert_eq!((m[2].target.as_str(), m[2].required), ("/s", true));
        assert_eq!((m[2].mode, m[2].uid), (Some(0o666), Some(5)));
        assert_eq!(m[3].target, "/run/buildkit/ssh_agent.2");
        assert!(MountSpec::parse("type=ssh,source=x").is_err());
    }
}
