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
                    exposed.insert(format!("{n}/{proto}"), json!({}));
                }
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
        Instruction::Workdir(w) => {
            let current = c.working_dir.clone().filter(|w| !w.is_empty());
            c.working_dir = Some(crate::plan::resolve_workdir(
                current.as_deref().unwrap_or("/"),
                w,
            ));
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
        Instruction::StopSignal(s) => c.stop_signal = Some(s.clone()),
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

/// BuildKit's `created_by` for a step.
pub fn created_by(step: &Step) -> String {
    let ctx = &step.context;
    match &step.instruction {
        Instruction::Run(run) => {
            let command = match &run.command {
                Command::Exec(a) => a.join(" "),
                Command::Shell(s) => format!("{} {s}", ctx.shell.join(" ")),
            };
            let args = if ctx.args.is_empty() {
                String::new()
            } else {
                let kv: Vec<String> = ctx.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("|{} {} ", kv.len(), kv.join(" "))
            };
            format!("RUN {args}{command} # buildkit")
        }
        Instruction::Copy(_) | Instruction::Add(_) => {
            format!("{} # buildkit", step.original.trim())
        }
        Instruction::Workdir(_) => format!("WORKDIR {}", ctx_workdir_after(step)),
        Instruction::Cmd(c) | Instruction::Entrypoint(c) => {
            let keyword = if matches!(step.instruction, Instruction::Cmd(_)) {
                "CMD"
            } else {
                "ENTRYPOINT"
            };
            format!(
                "{keyword} {}",
                serde_json::to_string(&command_vec(c, &ctx.shell)).expect("strings")
            )
        }
        _ => step.original.trim().to_owned(),
    }
}

fn ctx_workdir_after(step: &Step) -> String {
    match &step.instruction {
        Instruction::Workdir(w) => crate::plan::resolve_workdir(&step.context.workdir, w),
        _ => step.context.workdir.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
