//! The `run`/`create` flags that take a small language of their own: `--tmpfs`, `--mount`,
//! `--add-host`, `--dns*` and the capability names, each read as Docker reads it, and the
//! `/etc/hosts` and `/etc/resolv.conf` texts they shape. Every value ends up in a file the
//! container reads or in mount options, so whitespace, newlines and commas that would start
//! another entry are refused, not passed on.

use berth_runtime::spec::Tmpfs;

/// A size with an optional binary unit (`64m`, `1g`, `65536k`, `4096`).
fn parse_size(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let digits = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits);
    let n: u64 = number.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let shift = match unit.trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => return Err(format!("invalid size {s:?}: unknown unit {unit:?}")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("invalid mode {s:?}: an octal number up to 7777"))
}

/// A destination inside the container: absolute, and not `/` itself.
fn destination(what: &str, dest: &str) -> Result<String, String> {
    if !dest.starts_with('/') || dest.trim_matches('/').is_empty() {
        return Err(format!(
            "{what}: the destination {dest:?} must be an absolute path other than /"
        ));
    }
    if dest.contains(['\n', '\0', ',']) {
        return Err(format!(
            "{what}: the destination {dest:?} holds a comma or newline"
        ));
    }
    Ok(dest.to_owned())
}

/// `--tmpfs PATH[:OPTIONS]`: Docker's options `rw`, `ro`, `exec`, `noexec`, `nosuid`,
/// `nodev`, `size=N[kmg]`, `mode=OCTAL`. As Docker's, it is `noexec`, `nosuid` and `nodev`
/// unless `exec` is given; `suid` and `dev` are refused (berth's tmpfs mounts are always
/// `nosuid,nodev`).
pub fn parse_tmpfs(spec: &str) -> Result<Tmpfs, String> {
    let (dest, options) = spec.split_once(':').unwrap_or((spec, ""));
    let mut t = Tmpfs {
        dest: destination("--tmpfs", dest)?,
        size: None,
        mode: 0o1777,
        noexec: true,
        read_only: false,
    };
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some(("size", v)) => t.size = Some(parse_size(v)?),
            Some(("mode", v)) => t.mode = parse_mode(v)?,
            None if option == "rw" => t.read_only = false,
            None if option == "ro" => t.read_only = true,
            None if option == "exec" => t.noexec = false,
            None if option == "noexec" => t.noexec = true,
            None if option == "nosuid" || option == "nodev" => {}
            _ => {
                return Err(format!(
                    "--tmpfs {spec:?}: unknown option {option:?} (rw, ro, exec, noexec, nosuid, \
                     nodev, size=N, mode=OCTAL)"
                ));
            }
        }
    }
    Ok(t)
}

/// What one `--mount` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountFlag {
    /// `type=bind`: a host path that must exist.
    Bind {
        source: String,
        target: String,
        read_only: bool,
    },
    /// `type=volume`: a named volume (made if missing), or a new anonymous one.
    Volume {
        source: Option<String>,
        target: String,
        read_only: bool,
    },
    Tmpfs(Tmpfs),
}

/// `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=N][,tmpfs-mode=M]`
/// as Docker reads it (`src`, `dst`/`destination`, `ro` are the same keys; `readonly=true`,
/// `=1`, `=false`). A key berth does not apply (`bind-propagation` other than `rprivate`,
/// `volume-driver`, `volume-opt`, ...) is refused rather than ignored.
pub fn parse_mount(spec: &str) -> Result<MountFlag, String> {
    let mut kind = "volume";
    let (mut source, mut target) = (None::<String>, None::<String>);
    let mut read_only = false;
    let (mut size, mut mode) = (None, None);
    for field in spec.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (field.trim(), None),
        };
        let flag = |v: Option<&str>| match v {
            None | Some("1" | "true") => Ok(true),
            Some("0" | "false") => Ok(false),
            Some(other) => Err(format!(
                "--mount {spec:?}: {key}={other:?} is not a boolean"
            )),
        };
        let needs = |v: Option<&str>| {
            v.map(str::to_owned)
                .ok_or_else(|| format!("--mount {spec:?}: {key} needs a value"))
        };
        match key {
            "type" => {
                kind = match value {
                    Some("bind") => "bind",
                    Some("volume") => "volume",
                    Some("tmpfs") => "tmpfs",
                    other => {
                        return Err(format!(
                            "--mount {spec:?}: type {other:?} is not bind, volume or tmpfs"
                        ));
                    }
                };
            }
            "source" | "src" => source = Some(needs(value)?),
            "target" | "destination" | "dst" => target = Some(needs(value)?),
            "readonly" | "ro" => read_only = flag(value)?,
            "tmpfs-size" => size = Some(parse_size(&needs(value)?)?),
            "tmpfs-mode" => mode = Some(parse_mode(&needs(value)?)?),
            "bind-propagation" if value == Some("rprivate") => {}
            "" => {}
            _ => {
                return Err(format!(
                    "--mount {spec:?}: berth does not support {key:?} (type, source, target, \
                     readonly, tmpfs-size, tmpfs-mode)"
                ));
            }
        }
    }
    let target = destination(
        "--mount",
        &target.ok_or_else(|| format!("--mount {spec:?}: target is missing"))?,
    )?;
    if kind != "tmpfs" && (size.is_some() || mode.is_some()) {
        return Err(format!(
            "--mount {spec:?}: tmpfs-size and tmpfs-mode are for type=tmpfs"
        ));
    }
    Ok(match kind {
        "bind" => MountFlag::Bind {
            source: source
                .filter(|s| s.starts_with('/'))
                .ok_or_else(|| format!("--mount {spec:?}: a bind needs an absolute source"))?,
            target,
            read_only,
        },
        "volume" => MountFlag::Volume {
            source,
            target,
            read_only,
        },
        _ => {
            if source.is_some() {
                return Err(format!("--mount {spec:?}: a tmpfs takes no source"));
            }
            MountFlag::Tmpfs(Tmpfs {
                dest: target,
                size,
                mode: mode.unwrap_or(0o1777),
                noexec: true,
                read_only,
            })
        }
    })
}

/// Checks `--tmpfs` and `--mount` when the command line is read (clap's value parsers).
pub fn check_tmpfs(s: &str) -> Result<String, String> {
    parse_tmpfs(s).map(|_| s.to_owned())
}

pub fn check_mount(s: &str) -> Result<String, String> {
    parse_mount(s).map(|_| s.to_owned())
}

/// `--add-host HOST:IP` (or `HOST=IP`; an IPv6 address may follow the first colon whole).
pub fn parse_add_host(s: &str) -> Result<String, String> {
    let (host, ip) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| format!("--add-host {s:?}: expected HOST:IP"))?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !valid_host {
        return Err(format!("--add-host {s:?}: {host:?} is not a host name"));
    }
    let ip: std::net::IpAddr = ip
        .parse()
        .map_err(|_| format!("--add-host {s:?}: {ip:?} is not an IP address"))?;
    Ok(format!("{host}={ip}"))
}

/// `--dns IP`.
pub fn parse_dns(s: &str) -> Result<String, String> {
    s.parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| format!("--dns {s:?}: not an IP address"))
}

/// `--dns-search DOMAIN` and `--dns-option OPTION`: one word each.
pub fn parse_dns_word(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 253 || s.bytes().any(|b| b.is_ascii_whitespace() || b < 0x20) {
        return Err(format!(
            "{s:?}: one word without spaces or control characters"
        ));
    }
    Ok(s.to_owned())
}

/// The container's `/etc/hosts`: localhost, its own name, and the `--add-host` entries
/// (`HOST=IP`, as [`parse_add_host`] leaves them).
pub fn hosts_file(hostname: &str, extra: &[String]) -> String {
    crate::networking::hosts_file(&[hostname.to_owned()], None, &[], extra)
}

/// The container's `/etc/resolv.conf`: the network's (`base`), with its name servers
/// replaced by `--dns` ones when given, and `--dns-search` and `--dns-option` lines.
pub fn resolv_conf(base: &str, dns: &[String], search: &[String], options: &[String]) -> String {
    if dns.is_empty() && search.is_empty() && options.is_empty() {
        return base.to_owned();
    }
    let mut text = String::new();
    for line in base.lines() {
        let word = line.split_whitespace().next().unwrap_or_default();
        let replaced = (word == "nameserver" && !dns.is_empty())
            || (word == "search" && !search.is_empty())
            || (word == "options" && !options.is_empty());
        if !replaced {
            text.push_str(line);
            text.push('\n');
        }
    }
    for ip in dns {
        text.push_str(&format!("nameserver {ip}\n"));
    }
    if !search.is_empty() {
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    text
}

/// `--cap-add`/`--cap-drop`: a capability's name or `ALL`.
pub fn parse_cap(s: &str) -> Result<String, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok("ALL".to_owned());
    }
    berth_runtime::spec::parse_capability(s).map(|_| s.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_as_docker() {
        let t = parse_tmpfs("/run").unwrap();
        assert_eq!(
            (t.noexec, t.read_only, t.mode, t.size),
            (true, false, 0o1777, None)
        );
        let t = parse_tmpfs("/run:rw,exec,size=64m,mode=755").unwrap();
        assert_eq!((t.noexec, t.mode, t.size), (false, 0o755, Some(64 << 20)));
        assert!(parse_tmpfs("/run:ro").unwrap().read_only);
        for bad in [
            "run",
            "/",
            "/x:suid",
            "/x:dev",
            "/x:size=lots",
            "/x:mode=999",
            "/x:uid=0",
        ] {
            assert!(parse_tmpfs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mounts_as_docker() {
        assert_eq!(
            parse_mount("type=bind,source=/srv,target=/data,readonly").unwrap(),
            MountFlag::Bind {
                source: "/srv".into(),
                target: "/data".into(),
                read_only: true
            }
        );
        assert_eq!(
            parse_mount("src=cache,dst=/c").unwrap(),
            MountFlag::Volume {
                source: Some("cache".into()),
                target: "/c".into(),
                read_only: false
            }
        );
        assert!(matches!(
            parse_mount("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=700").unwrap(),
            MountFlag::Tmpfs(Tmpfs {
                size: Some(1048576),
                mode: 0o700,
                ..
            })
        ));
        for bad in [
            "type=bind,source=rel,target=/x",
            "type=bind,target=/x",
            "type=volume,source=v",
            "type=nfs,target=/x",
            "type=bind,source=/a,target=/x,bind-propagation=shared",
            "type=volume,target=/x,volume-driver=foo",
            "type=volume,target=/x,tmpfs-size=1m",
            "type=tmpfs,source=/a,target=/x",
            "type=bind,source=/a,target=/x,readonly=maybe",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_and_dns_refuse_what_would_start_another_entry() {
        assert_eq!(parse_add_host("db:10.0.0.5").unwrap(), "db=10.0.0.5");
        assert_eq!(parse_add_host("v6:::1").unwrap(), "v6=::1");
        assert_eq!(parse_add_host("v6=[fe80::1]").unwrap(), "v6=fe80::1");
        for bad in ["db", "db:notip", "a b:1.2.3.4", "x\ny:1.2.3.4", ":1.2.3.4"] {
            assert!(parse_add_host(bad).is_err(), "{bad}");
        }
        assert!(parse_dns("1.1.1.1").is_ok());
        assert!(parse_dns("1.1.1.1\nnameserver 2.2.2.2").is_err());
        assert!(parse_dns_word("ndots:2").is_ok());
        assert!(parse_dns_word("a b").is_err());
        let hosts = hosts_file("h", &["db=10.0.0.5".into()]);
        assert!(hosts.ends_with("10.0.0.5\tdb\n"), "{hosts}");
        let resolv = resolv_conf(
            "nameserver 9.9.9.9\nsearch old\n",
            &["1.1.1.1".into()],
            &["example.org".into()],
            &["ndots:2".into()],
        );
        assert_eq!(
            resolv,
            "nameserver 1.1.1.1\nsearch example.org\noptions ndots:2\n"
        );
        assert_eq!(
            resolv_conf("nameserver 9.9.9.9\n", &[], &[], &[]),
            "nameserver 9.9.9.9\n"
        );
    }

    #[test]
    fn capability_names_as_docker() {
        assert_eq!(parse_cap("net_admin").unwrap(), "NET_ADMIN");
        assert_eq!(parse_cap("CAP_SYS_TIME").unwrap(), "CAP_SYS_TIME");
        assert_eq!(parse_cap("all").unwrap(), "ALL");
        assert!(parse_cap("FLY").is_err());
    }
}
