//! A rootless berth: which commands run inside the user namespace
//! ([`berth_runtime::userns`]) and entering it, once, before any thread starts: joining the
//! namespace the user's pause process holds ([`berth_runtime::pause`]), or starting that
//! process when none runs.

use std::sync::OnceLock;

use anyhow::Context;
use berth_runtime::userns::{self, Entered, Mapping};

use crate::Command;

/// Why `berth info` runs outside the namespace, when entering it failed.
static NOT_ENTERED: OnceLock<String> = OnceLock::new();

/// Enters the user namespace when an unprivileged user runs a command that uses the store
/// or runs containers; `true` when berth is rootless (inside its namespace, or an
/// unprivileged user's command that needs none), which keeps the store in the user's data
/// directory.
pub fn enter_if_needed(command: &Command) -> anyhow::Result<bool> {
    if userns::rootless() {
        return Ok(true);
    }
    if rustix::process::geteuid().is_root() {
        return Ok(false);
    }
    if !uses_the_namespace(command) {
        return Ok(true);
    }
    let mut mapping = Mapping::for_current_user();
    let mut warning = None;
    if mapping.is_single() {
        warning = Some(format!(
            "no subordinate ids for {} in /etc/subuid and /etc/subgid",
            user_name()
        ));
    } else if !helpers_present() {
        warning = Some("newuidmap and newgidmap are not installed (Debian's uidmap)".to_owned());
        mapping = Mapping {
            uids: mapping.uids[..1].to_vec(),
            gids: mapping.gids[..1].to_vec(),
        };
    }
    if let (Some(why), true) = (&warning, warns(command)) {
        errln!(
            "berth: warning: {why}: only your own id is mapped (as root inside), so a layer \
             with files of other owners cannot be unpacked and a chown to another id fails"
        );
    }
    match userns::enter(&mapping) {
        Ok(Entered::Replaced) => {
            errln!(
                "berth: /etc/subuid or /etc/subgid changed: berth's user namespace was made \
                 again with the new mapping (containers started before run on in the old one)"
            );
            Ok(true)
        }
        Ok(Entered::Alone(why)) => {
            errln!(
                "berth: warning: berth's pause process cannot be used ({why}): this command \
                 has a user namespace of its own, and a later command may not be able to \
                 signal its containers' processes"
            );
            Ok(true)
        }
        Ok(Entered::Joined | Entered::Started) => Ok(true),
        Err(e) if matches!(command, Command::Info(_)) => {
            let _ = NOT_ENTERED.set(e.to_string());
            Ok(true)
        }
        Err(e) => Err(e).context("entering berth's user namespace (rootless)"),
    }
}

/// Why entering the namespace failed, when `berth info` went on without it.
pub fn not_entered() -> Option<&'static str> {
    NOT_ENTERED.get().map(String::as_str)
}

/// Commands that open the store or run containers; the others (registry logins and tags,
/// help, version, completions, reading a Dockerfile) run as the user.
fn uses_the_namespace(command: &Command) -> bool {
    !matches!(
        command,
        Command::Login(_)
            | Command::Logout(_)
            | Command::Tags(_)
            | Command::Network { .. }
            | Command::Debug { .. }
            | Command::Version(_)
            | Command::Completion(_)
            | Command::Man { .. }
            | Command::Init { .. }
            | Command::ExecHelper { .. }
            | Command::Pause
    ) && !command.is_system_migrate()
}

/// Commands that unpack layers or run containers, which a single-id mapping limits.
fn warns(command: &Command) -> bool {
    matches!(
        command,
        Command::Build(_)
            | Command::Run(_)
            | Command::Pull(_)
            | Command::Load(_)
            | Command::Import(_)
            | Command::Copy(_)
    )
}

fn helpers_present() -> bool {
    ["newuidmap", "newgidmap"]
        .iter()
        .all(|h| on_path(h).is_some())
}

fn user_name() -> String {
    let uid = rustix::process::getuid();
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid.as_raw()))
        .ok()
        .flatten()
        .map_or_else(|| uid.as_raw().to_string(), |u| u.name)
}

/// Where `name` is found on `PATH`, as a shell would find it.
pub fn on_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The network of a build's RUN steps when none is asked for: `BERTH_DEFAULT_BUILD_NETWORK`
/// when set (`bridge`, `none`, `host`, `slirp4netns`); else as root the default bridge
/// (outbound access through NAT, never the host's loopback); rootless, slirp4netns's where
/// it is installed, so a step reaches out without reaching the host's loopback, else the
/// host's, with a warning.
pub fn default_build_network() -> berth_runtime::spec::NetworkMode {
    use berth_runtime::spec::NetworkMode;
    if let Some(mode) = std::env::var("BERTH_DEFAULT_BUILD_NETWORK")
        .ok()
        .and_then(|m| m.parse().ok())
    {
        return mode;
    }
    if !userns::rootless() {
        return NetworkMode::Bridge;
    }
    if on_path("slirp4netns").is_some() {
        return NetworkMode::Slirp4netns;
    }
    errln!(
        "berth: warning: rootless without slirp4netns: RUN steps share the host's network, \
         its loopback included (install slirp4netns for a network of their own)"
    );
    NetworkMode::Host
}
