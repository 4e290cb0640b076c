//! The image config a stage builds up: each instruction's effect on it (BuildKit's
//! `dispatch*`), and the history entry each step leaves.

use std::collections::BTreeMap;

use berth_oci::ImageConfig;
use berth_oci::config::History;
use serde_json::{Value, json};

use crate::instructions::{Command, Healthcheck, Instruction};
use crate::plan::Step;

/// BuildKit's history comment.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds, as the config stores it.
pub fn go_duration(s: &str) -> Result<i64, String> {
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration {s:?}: missing unit"))?;
        let value: f64 = rest[..n]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[n..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => return Err(format!("invalid duration {s:?}: unknown unit {u:?}")),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Ok(total as i64)
}

fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let prefix = format!("{key}=");
    match env.iter_mut().find(|e| e.starts_with(&prefix)) {
        Some(e) => *e = format!("{key}={value}"),
        None => env.push(format!("{key}={value}")),
    }
}

/// EXPOSE's ports as `port/proto` keys, ranges expanded (Docker's `nat.ParsePortSpecs`).
pub fn expand_ports(ports: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for p in ports {
        let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        let proto = proto.to_ascii_lowercase();
        let (lo, hi) = match port.split_once('-') {
            Some((a, b)) => (a, b),
            None => (port, port),
        };
        let lo: u16 = lo.parse().map_err(|_| format!("invalid port {p:?}"))?;
        let hi: u16 = hi
            .parse()
            .map_err(|_| format!("invalid port range {p:?}"))?;
        if hi < lo {
            return Err(format!("invalid port range {p:?}"));
        }
        for n in lo..=hi {
            let key = format!("{n}/{proto}");
            if !out.contains(&key) {
                out.push(key);
            }
        }
    }
    Ok(out)
}

/// The stage's config state beyond the config itself.
#[derive(Debug, Clone, Default)]
pub struct ConfigState {
    /// CMD was set in this stage (an ENTRYPOINT then keeps it).
    pub cmd_set: bool,
}

fn command_vec(cmd: &Command, shell: &[String]) -> Vec<String> {
    match cmd {
        Command::Exec(a) => a.clone(),
        Command::Shell(s) => shell.iter().cloned().chain([s.clone()]).collect(),
    }
}

/// Applies a config instruction; `shell` is the SHELL in effect.
pub fn apply(
    config: &mut ImageConfig,
    state: &mut ConfigState,
    inst: &Instruction,
    shell: &[String],
) -> Result<(), String> {
    let c = &mut config.config;
    match inst {
        Instruction::Env(pairs) => {
            let env = c.env.get_or_insert_with(Vec::new);
            for p in pairs {
                set_env(env, &p.key, &p.value);
            }
        }
        Instruction::Label(pairs) => {
            let labels = c.labels.get_or_insert_with(BTreeMap::new);
            for p in pairs {
                labels.insert(p.key.clone(), p.value.clone());
            }
        }
        Instruction::Expose(ports) => {
            let exposed = c.exposed_ports.get_or_insert_with(BTreeMap::new);
            for key in expand_ports(ports)? {
                exposed.insert(key, json!({}));
            }
        }
        Instruction::Volume(paths) => {
            let volumes = c.volumes.get_or_insert_with(BTreeMap::new);
            for p in paths {
                if p.trim().is_empty() {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                volumes.insert(p.clone(), json!({}));
            }
        }
        Instruction::User(u) => c.user = Some(u.clone()),
        // The plan made the path absolute.
        Instruction::Workdir(w) => {
            c.working_dir = Some(w.clone());
        }
        Instruction::Cmd(cmd) => {
            c.cmd = Some(command_vec(cmd, shell));
            state.cmd_set = true;
        }
        Instruction::Entrypoint(cmd) => {
            c.entrypoint = Some(command_vec(cmd, shell));
            if !state.cmd_set {
                c.cmd = None;
            }
        }
        Instruction::Shell(s) => c.shell = Some(s.clone()),
        Instruction::StopSignal(s) => {
            if !is_signal(s) {
                return Err(format!("Invalid signal: {s}"));
            }
            c.stop_signal = Some(s.clone());
        }
        Instruction::Healthcheck(h) => {
            c.healthcheck = Some(match h {
                Healthcheck::None => json!({"Test": ["NONE"]}),
                Healthcheck::Check {
                    test,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                } => {
                    let mut m = serde_json::Map::new();
                    m.insert("Test".into(), json!(test));
                    for (k, v) in [
                        ("Interval", interval),
                        ("Timeout", timeout),
                        ("StartPeriod", start_period),
                        ("StartInterval", start_interval),
                    ] {
                        if let Some(v) = v {
                            m.insert(k.into(), json!(go_duration(v)?));
                        }
                    }
                    if let Some(r) = retries {
                        m.insert("Retries".into(), json!(r));
                    }
                    Value::Object(m)
                }
            });
        }
        Instruction::Onbuild(trigger) => c
            .on_build
            .get_or_insert_with(Vec::new)
            .push(trigger.clone()),
        Instruction::Maintainer(m) => config.author = Some(m.clone()),
        Instruction::Arg(_) | Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) => {}
    }
    Ok(())
}

/// Go's `%v` of a string slice: `[a b c]`.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `%q` of a string slice, as BuildKit prints commands: `["a" "b"]`.
fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| crate::dockerfile::ast::go_quote(s))
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// `n / div` as Go prints a duration's number: the fraction without trailing zeros.
fn go_fraction(n: u64, div: u64) -> String {
    let (whole, rest) = (n / div, n % div);
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A duration in nanoseconds as Go's `time.Duration` prints it: `0s`, `100ms`, `1.5s`,
/// `1m30s`, `1h0m0s`.
pub fn go_duration_string(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let text = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", go_fraction(u, 1_000))
    } else if u < 1_000_000_000 {
        format!("{}ms", go_fraction(u, 1_000_000))
    } else {
        let secs = u / 1_000_000_000;
        let s = go_fraction(secs % 60 * 1_000_000_000 + u % 1_000_000_000, 1_000_000_000);
        let (h, m) = (secs / 3600, secs / 60 % 60);
        if h > 0 {
            format!("{h}h{m}m{s}s")
        } else if m > 0 {
            format!("{m}m{s}s")
        } else {
            format!("{s}s")
        }
    };
    format!("{sign}{text}")
}

/// An optional HEALTHCHECK duration as Go prints the config's field (`0s` when not given).
fn go_duration_text(d: &Option<String>) -> String {
    match d {
        None => "0s".into(),
        Some(text) => go_duration(text).map_or_else(|_| text.clone(), go_duration_string),
    }
}

/// BuildKit's `created_by` for a step (the formats of dockerfile2llb, Go's `%v` included).
pub fn created_by(step: &Step) -> String {
    let ctx = &step.context;
    let kv = |pairs: &[crate::instructions::KeyValue]| {
        pairs
            .iter()
            .map(|p| format!("{}={}", p.key, p.value))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match &step.instruction {
        Instruction::Run(run) => {
            // The process's arguments as the step runs them (heredocs included); a command
            // that cannot run fails its step before any history is written.
            let command = super::run::run_args(run, &ctx.shell)
                .map(|a| a.args.join(" "))
                .unwrap_or_else(|e| e);
            let args = if ctx.args.is_empty() {
                String::new()
            } else {
                let kv: Vec<String> = ctx.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("|{} {} ", kv.len(), kv.join(" "))
            };
            format!("RUN {args}{command} # buildkit")
        }
        Instruction::Copy(c) | Instruction::Add(c) => {
            let keyword = if matches!(step.instruction, Instruction::Add(_)) {
                "ADD"
            } else {
                "COPY"
            };
            let sources = crate::redact::url_credentials(&c.sources.join(" ")).into_owned();
            format!("{keyword} {sources} {} # buildkit", c.dest)
        }
        Instruction::Workdir(w) => format!("WORKDIR {w}"),
        Instruction::Cmd(c) => format!("CMD {}", go_quoted_list(&command_vec(c, &ctx.shell))),
        Instruction::Entrypoint(c) => {
            format!("ENTRYPOINT {}", go_quoted_list(&command_vec(c, &ctx.shell)))
        }
        Instruction::Env(pairs) => format!("ENV {}", kv(pairs)),
        Instruction::Label(pairs) => format!("LABEL {}", kv(pairs)),
        // As written (a --build-arg or a global default does not show), as BuildKit.
        Instruction::Arg(defs) => {
            let parts: Vec<String> = defs
                .iter()
                .map(|d| match &d.default {
                    Some(v) => format!("{}={v}", d.name),
                    None => d.name.clone(),
                })
                .collect();
            format!("ARG {}", parts.join(" "))
        }
        Instruction::Expose(ports) => {
            let mut keys = expand_ports(ports).unwrap_or_default();
            keys.sort();
            let items: Vec<String> = keys.iter().map(|k| format!("{k}:{{}}")).collect();
            format!("EXPOSE map[{}]", items.join(" "))
        }
        Instruction::Volume(v) => format!("VOLUME {}", go_list(v)),
        Instruction::Shell(s) => format!("SHELL {}", go_list(s)),
        Instruction::User(u) => format!("USER {u}"),
        Instruction::StopSignal(s) => format!("STOPSIGNAL {s}"),
        Instruction::Maintainer(m) => format!("MAINTAINER {m}"),
        // The current frontend prints the config with Go's `%+v`:
        // `HEALTHCHECK {Test:[CMD-SHELL true] Interval:10s Timeout:0s StartPeriod:0s
        // StartInterval:0s Retries:0}`.
        Instruction::Healthcheck(h) => {
            let none = vec!["NONE".to_owned()];
            let (test, interval, timeout, start_period, start_interval, retries) = match h {
                Healthcheck::None => (&none, &None, &None, &None, &None, &None),
                Healthcheck::Check {
                    test,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                } => (
                    test,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                ),
            };
            format!(
                "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
                go_list(test),
                go_duration_text(interval),
                go_duration_text(timeout),
                go_duration_text(start_period),
                go_duration_text(start_interval),
                retries.unwrap_or(0),
            )
        }
        Instruction::Onbuild(t) => format!("ONBUILD {}", crate::redact::url_credentials(t)),
    }
}

pub fn history(created: &str, created_by: String, empty_layer: bool) -> History {
    History {
        created: Some(created.to_owned()),
        created_by: Some(created_by),
        author: None,
        comment: Some(HISTORY_COMMENT.into()),
        empty_layer,
    }
}

/// Whether `s` names a Linux signal as Docker reads STOPSIGNAL: a number from 1 to 255, or a
/// name with or without `SIG` in any case (`TERM`, `sigkill`, `RTMIN+3`, `RTMAX-1`).
fn is_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u8>() {
        return n != 0;
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "RTMIN", "RTMAX",
    ];
    let offset = |rest: &str| rest.parse::<u8>().is_ok_and(|n| (1..=15).contains(&n));
    NAMES.contains(&name)
        || name.strip_prefix("RTMIN+").is_some_and(offset)
        || name.strip_prefix("RTMAX-").is_some_and(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals_as_docker_reads_them() {
        for ok in [
            "SIGTERM",
            "term",
            "9",
            "255",
            "SIGRTMIN+3",
            "RTMAX-1",
            "sigwinch",
        ] {
            assert!(is_signal(ok), "{ok}");
        }
        for bad in ["SIGNOTREAL", "0", "256", "RTMIN+16", "", "SIG", "-1"] {
            assert!(!is_signal(bad), "{bad}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("30s").unwrap(), 30_000_000_000);
        assert_eq!(go_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(go_duration("500ms").unwrap(), 500_000_000);
        assert_eq!(go_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert!(go_duration("5").is_err());
        assert!(go_duration("5x").is_err());
    }
}
