//! What a RUN step may have: the Dockerfile asks (`RUN --network`, `RUN --security`), the
//! person running the build bounds (`--network`, `--allow`). In: a step's RUN flags, the
//! build's network and entitlements. Out: the step's network and privilege, or an error that
//! names the flag to pass.
//!
//! The command line bounds the Dockerfile, never the reverse (BuildKit's entitlements):
//!
//! | `RUN` asks | needs | gets |
//! |---|---|---|
//! | nothing, or `--network=default` | — | the build's `--network` |
//! | `--network=none` | — | no network |
//! | `--network=host` | `--allow network.host` | the host's network namespace |
//! | `--security=sandbox` (or nothing) | — | Docker's default capabilities, seccomp |
//! | `--security=insecure` | `--allow security.insecure` | every capability, no seccomp |
//!
//! `ADD http(s)://...` downloads from berth's own process, on the host's network: under
//! `--network none` a Dockerfile may not download anything (BuildKit fetches regardless of
//! `--network`; berth takes `none` to mean no network for anything the Dockerfile asks).
//!
//! The whole plan is checked before the first step starts, so a build that would need an
//! entitlement fails at once, cached or not; each RUN is checked again as it starts.

use std::fmt;
use std::str::FromStr;

use berth_runtime::spec::NetworkMode;

use crate::error::StepError;
use crate::instructions::Run;
use crate::instructions::commands::{RunNetwork, RunSecurity};

/// A privilege beyond the sandbox that only the command line can grant (`--allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entitlement {
    /// `network.host`: `RUN --network=host`.
    NetworkHost,
    /// `security.insecure`: `RUN --security=insecure`.
    SecurityInsecure,
}

impl Entitlement {
    pub fn name(self) -> &'static str {
        match self {
            Entitlement::NetworkHost => "network.host",
            Entitlement::SecurityInsecure => "security.insecure",
        }
    }
}

impl fmt::Display for Entitlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Entitlement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "network.host" => Ok(Entitlement::NetworkHost),
            "security.insecure" => Ok(Entitlement::SecurityInsecure),
            _ => Err(format!(
                "unknown entitlement {s:?}: use network.host or security.insecure"
            )),
        }
    }
}

/// How a RUN step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPolicy {
    pub network: NetworkMode,
    /// Every capability, no seccomp, no masked paths (`--security=insecure`).
    pub privileged: bool,
}

/// The policy of one RUN step, or the reason it may not run.
pub fn run_policy(
    run: &Run,
    build_network: NetworkMode,
    allowed: &[Entitlement],
) -> Result<RunPolicy, StepError> {
    let needs = |e: Entitlement, what: &str| {
        if allowed.contains(&e) {
            Ok(())
        } else {
            Err(StepError::NotAllowed(format!(
                "{what} is not allowed: the build must be started with --allow {e}"
            )))
        }
    };
    let network = match run.network {
        RunNetwork::Default => build_network,
        RunNetwork::None => NetworkMode::None,
        RunNetwork::Host => {
            needs(Entitlement::NetworkHost, "RUN --network=host")?;
            NetworkMode::Host
        }
    };
    let privileged = match run.security {
        RunSecurity::Sandbox => false,
        RunSecurity::Insecure => {
            needs(Entitlement::SecurityInsecure, "RUN --security=insecure")?;
            true
        }
    };
    Ok(RunPolicy {
        network,
        privileged,
    })
}

/// Whether an ADD's sources may be fetched under the build's network.
pub fn add_policy(sources: &[String], build_network: NetworkMode) -> Result<(), StepError> {
    let remote = sources
        .iter()
        .find(|s| s.starts_with("http://") || s.starts_with("https://"));
    match (remote, build_network) {
        (Some(url), NetworkMode::None) => Err(StepError::NotAllowed(format!(
            "ADD {}: the build runs with --network none, which allows no downloads",
            crate::redact::url_credentials(url)
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instructions::Instruction;

    /// `RUN [--network=N] [--security=S] true` as the Dockerfile parser makes it; `None` when
    /// the parser refuses the flags.
    fn run(network: Option<&str>, security: Option<&str>) -> Option<Run> {
        let mut line = "RUN".to_owned();
        if let Some(n) = network {
            line.push_str(&format!(" --network={n}"));
        }
        if let Some(s) = security {
            line.push_str(&format!(" --security={s}"));
        }
        let df =
            crate::instructions::parse_dockerfile(&format!("FROM scratch\n{line} true\n")).ok()?;
        match &df.stages[0].instructions[0].instruction {
            Instruction::Run(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// RUN --network, RUN --security, the build's network, `--allow` → network and
    /// privilege, or `None` for a refusal.
    type Case = (
        Option<&'static str>,
        Option<&'static str>,
        NetworkMode,
        &'static [Entitlement],
        Option<(NetworkMode, bool)>,
    );

    #[test]
    fn the_command_line_bounds_the_dockerfile() {
        use Entitlement::*;
        use NetworkMode::{Host, None as Isolated};
        const ALL: &[Entitlement] = &[NetworkHost, SecurityInsecure];
        let cases: &[Case] = &[
            (None, None, Isolated, &[], Some((Isolated, false))),
            (None, None, Host, &[], Some((Host, false))),
            (
                Some("default"),
                None,
                Isolated,
                &[],
                Some((Isolated, false)),
            ),
            (Some("default"), None, Host, &[], Some((Host, false))),
            (Some("none"), None, Host, &[], Some((Isolated, false))),
            (Some("host"), None, Isolated, &[], None),
            (Some("host"), None, Host, &[], None),
            (Some("host"), None, Isolated, &[SecurityInsecure], None),
            (
                Some("host"),
                None,
                Isolated,
                &[NetworkHost],
                Some((Host, false)),
            ),
            (None, Some("sandbox"), Host, &[], Some((Host, false))),
            (None, Some("insecure"), Host, &[], None),
            (None, Some("insecure"), Host, &[NetworkHost], None),
            (
                None,
                Some("insecure"),
                Host,
                &[SecurityInsecure],
                Some((Host, true)),
            ),
            (
                Some("host"),
                Some("insecure"),
                Isolated,
                ALL,
                Some((Host, true)),
            ),
            (Some("bridge"), None, Host, ALL, None),
            (None, Some("root"), Host, ALL, None),
        ];
        for (i, (net, sec, build, allowed, want)) in cases.iter().enumerate() {
            let got = run(*net, *sec)
                .and_then(|r| run_policy(&r, *build, allowed).ok())
                .map(|p| (p.network, p.privileged));
            assert_eq!(
                got, *want,
                "case {i}: {net:?} {sec:?} {build:?} {allowed:?}"
            );
        }
    }

    #[test]
    fn a_refusal_names_the_flag_to_pass() {
        let e = run_policy(&run(Some("host"), None).unwrap(), NetworkMode::None, &[]).unwrap_err();
        assert!(matches!(e, StepError::NotAllowed(_)), "{e}");
        assert!(e.to_string().contains("--allow network.host"), "{e}");
        let e = run_policy(
            &run(None, Some("insecure")).unwrap(),
            NetworkMode::Host,
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("--allow security.insecure"), "{e}");
    }

    #[test]
    fn no_download_under_network_none() {
        let local = vec!["a.tar".to_owned()];
        let remote = vec!["a".to_owned(), "https://u:p@h/f".to_owned()];
        assert!(add_policy(&local, NetworkMode::None).is_ok());
        assert!(add_policy(&remote, NetworkMode::Host).is_ok());
        let e = add_policy(&remote, NetworkMode::None).unwrap_err();
        assert!(matches!(e, StepError::NotAllowed(_)), "{e}");
        let e = e.to_string();
        assert!(e.contains("--network none") && !e.contains("u:p"), "{e}");
    }

    #[test]
    fn entitlements_parse_by_buildkit_name() {
        assert_eq!("network.host".parse(), Ok(Entitlement::NetworkHost));
        assert_eq!(
            "security.insecure".parse(),
            Ok(Entitlement::SecurityInsecure)
        );
        assert!("network".parse::<Entitlement>().is_err());
        assert!("device".parse::<Entitlement>().is_err());
    }
}
