//! RUN, CMD, ENTRYPOINT, SHELL and HEALTHCHECK: command lines in shell or exec form.

use super::flags::{Flags, Kind};
use super::mounts::MountSpec;
use crate::dockerfile::{Heredoc, Node};

/// Shell form (run through SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: Command,
    /// `--mount`s (`type=cache,target=/root/.cache`); the plan makes their targets absolute.
    pub mounts: Vec<MountSpec>,
    pub network: RunNetwork,
    pub security: RunSecurity,
    pub heredocs: Vec<Heredoc>,
}

/// `RUN --network=default|none|host`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunNetwork {
    /// The build's network (`--network` of `berth build`).
    #[default]
    Default,
    None,
    /// Needs the `network.host` entitlement.
    Host,
}

/// `RUN --security=sandbox|insecure`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunSecurity {
    #[default]
    Sandbox,
    /// Every capability, no seccomp, no masked paths; needs the `security.insecure`
    /// entitlement.
    Insecure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    Check {
        /// `["CMD", args…]` or `["CMD-SHELL", "command"]`, as the image config stores it.
        test: Vec<String>,
        interval: Option<String>,
        timeout: Option<String>,
        start_period: Option<String>,
        start_interval: Option<String>,
        retries: Option<u32>,
    },
}

pub fn command_of(node: &Node) -> Command {
    let words: Vec<String> = node.words().into_iter().map(str::to_owned).collect();
    if node.json {
        Command::Exec(words)
    } else {
        Command::Shell(words.into_iter().next().unwrap_or_default())
    }
}

pub fn parse_run(node: &Node) -> Result<Run, String> {
    let f = Flags::parse(
        &node.flags,
        &[
            ("mount", Kind::List),
            ("network", Kind::String),
            ("security", Kind::String),
        ],
    )?;
    let network = match f.string("network").as_deref() {
        None | Some("default") => RunNetwork::Default,
        Some("none") => RunNetwork::None,
        Some("host") => RunNetwork::Host,
        Some(n) => {
            return Err(format!(
                "unsupported network mode {n:?}: use default, none or host"
            ));
        }
    };
    let security = match f.string("security").as_deref() {
        None | Some("sandbox") => RunSecurity::Sandbox,
        Some("insecure") => RunSecurity::Insecure,
        Some(s) => {
            return Err(format!(
                "unsupported security mode {s:?}: use sandbox or insecure"
            ));
        }
    };
    let mut mounts = f
        .list("mount")
        .iter()
        .map(|spec| MountSpec::parse(spec))
        .collect::<Result<Vec<_>, _>>()?;
    super::mounts::number_ssh_targets(&mut mounts);
    // `RUN` alone runs the shell with an empty command, as in BuildKit.
    Ok(Run {
        command: command_of(node),
        mounts,
        network,
        security,
        heredocs: super::heredocs(node),
    })
}

/// A Go duration as HEALTHCHECK takes it (`30s`, `1m30s`, `500ms`).
fn check_duration(name: &str, v: &str) -> Result<(), String> {
    let re = regex::Regex::new(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$").expect("valid regex");
    if v == "0" || re.is_match(v) {
        Ok(())
    } else {
        Err(format!("invalid duration {v:?} for --{name}"))
    }
}

pub fn parse_healthcheck(node: &Node) -> Result<Healthcheck, String> {
    let f = Flags::parse(
        &node.flags,
        &[
            ("interval", Kind::String),
            ("timeout", Kind::String),
            ("start-period", Kind::String),
            ("start-interval", Kind::String),
            ("retries", Kind::String),
        ],
    )?;
    let Some(first) = node.next.as_deref() else {
        return Err("HEALTHCHECK requires an argument: NONE or CMD".into());
    };
    match first.value.to_uppercase().as_str() {
        "NONE" => {
            if first.next.is_some() || !node.flags.is_empty() {
                return Err("HEALTHCHECK NONE takes no arguments".into());
            }
            Ok(Healthcheck::None)
        }
        "CMD" => {
            let Some(cmd) = first.next.as_deref() else {
                return Err("missing command after HEALTHCHECK CMD".into());
            };
            let mut words = vec![];
            let mut n = Some(cmd);
            while let Some(x) = n {
                words.push(x.value.clone());
                n = x.next.as_deref();
            }
            let test = if node.json {
                std::iter::once("CMD".to_owned()).chain(words).collect()
            } else {
                vec!["CMD-SHELL".to_owned(), words.concat()]
            };
            for name in ["interval", "timeout", "start-period", "start-interval"] {
                if let Some(v) = f.string(name) {
                    check_duration(name, &v)?;
                }
            }
            let retries =
                match f.string("retries") {
                    Some(r) => Some(r.parse::<u32>().map_err(|_| {
                        format!("invalid --retries {r:?}: a whole number is needed")
                    })?),
                    None => None,
                };
            Ok(Healthcheck::Check {
                test,
                interval: f.string("interval"),
                timeout: f.string("timeout"),
                start_period: f.string("start-period"),
                start_interval: f.string("start-interval"),
                retries,
            })
        }
        other => Err(format!("unknown type {other:?} in HEALTHCHECK (try CMD)")),
    }
}
