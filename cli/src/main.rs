//! `berth`: the composition root. Each command file turns clap arguments into one library
//! call; only this crate chooses concrete store, registry and runtime types, and only this
//! crate prints. Errors are printed with their whole chain and mapped to Docker's exit codes
//! (DESIGN.md): 0 success, 1 failure, 2 bad usage or bad input.

#[macro_use]
mod stdio;

mod change;
mod commands;
mod container_fs;
mod containers;
mod download;
mod examples;
mod exporters;
mod filters;
mod follow;
mod health;
mod launch;
mod networking;
mod output;
mod output_file;
mod progress;
mod prune;
mod resolver;
mod rootless;
mod run_flags;
mod template;
mod transfer;
mod wiring;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "Daemonless OCI image builder, store and runtime"
)]
struct Cli {
    /// Store root (default: /var/lib/berth as root, else $XDG_DATA_HOME/berth)
    #[arg(long, global = true, env = "BERTH_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build an image from a Dockerfile
    Build(commands::build::Args),
    /// Pull an image from a registry
    Pull(commands::registry::PullArgs),
    /// Push an image to a registry
    Push(commands::registry::PushArgs),
    /// Log in to a registry (credentials are verified, then saved)
    Login(commands::registry::LoginArgs),
    /// Remove saved credentials for a registry
    Logout(commands::registry::LogoutArgs),
    /// List the tags of a repository in a registry
    Tags(commands::registry::TagsArgs),
    /// Copy an image between registries, layouts, archives and the store
    Copy(commands::copy::Args),
    /// List images
    Images(commands::images::Args),
    /// Give an image another name
    Tag(commands::tag::Args),
    /// Remove images
    Rmi(commands::rmi::Args),
    /// Show an image's details as JSON
    Inspect(commands::inspect::Args),
    /// Show an image's history
    History(commands::history::Args),
    /// Make a one-layer image from a rootfs directory or tarball
    Import(commands::import::Args),
    /// Write images to an archive (OCI or docker format)
    Save(commands::save::Args),
    /// Read images from an archive (OCI or docker format)
    Load(commands::load::Args),
    /// Run a command in a new container
    Run(commands::run::Args),
    /// Create a container without starting it (the flags of `run`)
    Create(launch::RunArgs),
    /// Start created or stopped containers (in the background, as `run -d`)
    Start(commands::start::StartArgs),
    /// Stop containers, then start them again
    Restart(commands::start::RestartArgs),
    /// List containers
    Ps(commands::ps::Args),
    /// Remove containers
    Rm(commands::rm::Args),
    /// Print a detached container's output
    Logs(commands::lifecycle::LogsArgs),
    /// Stop containers (SIGTERM, then SIGKILL after -t seconds)
    Stop(commands::lifecycle::StopArgs),
    /// Run a command in a running container
    Exec(commands::exec::Args),
    /// Copy files between a container and the host (or a tar stream)
    Cp(commands::cp::Args),
    /// Make an image of a container's changes
    Commit(commands::commit::Args),
    /// Show the changes to a container's filesystem
    Diff(commands::diff::Args),
    /// Write a container's filesystem as a tar
    Export(commands::export::Args),
    /// Show the processes of a running container
    Top(commands::top::Args),
    /// Send a signal to containers
    Kill(commands::lifecycle::KillArgs),
    /// Wait for containers to stop and print their exit codes
    Wait(commands::lifecycle::WaitArgs),
    /// Follow a detached container's output until it exits; exit with its code
    #[command(long_about = commands::attach::HELP)]
    Attach(commands::attach::Args),
    /// Manage volumes
    #[command(long_about = commands::volume::HELP)]
    Volume {
        #[command(subcommand)]
        command: commands::volume::Command,
    },
    /// Manage networks: bridge (the default), host, none, and user bridges
    Network {
        #[command(subcommand)]
        command: commands::network::Command,
    },
    /// Manage images (`prune`; the other image commands are top-level: images, rmi, ...)
    Image {
        #[command(subcommand)]
        command: commands::prune::ImageCommand,
    },
    /// Manage containers (`prune`; the other container commands are top-level: ps, rm, ...)
    Container {
        #[command(subcommand)]
        command: commands::prune::ContainerCommand,
    },
    /// Inspect how berth reads its inputs
    Debug {
        #[command(subcommand)]
        command: commands::debug::Command,
    },
    /// Runs a detached container (internal: started by `run -d`)
    #[command(name = "__monitor", hide = true)]
    Monitor {
        dir: PathBuf,
        /// The container has just exited: apply its restart policy first
        #[arg(long)]
        restarting: bool,
    },
    /// The container init (internal: started by `run` through /proc/self/exe)
    #[command(name = "__init", hide = true)]
    Init { bundle: PathBuf },
    /// A process joining a running container (internal: started by `exec` through
    /// /proc/self/exe with three descriptors)
    #[command(name = "__exec", hide = true)]
    ExecHelper { fds: Vec<String> },
    /// The rootless pause process (internal: started through /proc/self/exe by the first
    /// command that enters berth's user namespace)
    #[command(name = "__pause", hide = true)]
    Pause,
    /// Manage the store
    System {
        #[command(subcommand)]
        command: commands::system::Command,
    },
    /// Run a command in berth's user namespace, where a rootless store's files show their
    /// owners from the image and can be removed (as root: the command as is)
    Unshare(commands::unshare::Args),
    /// Show berth's version, commit and store format
    Version(commands::info::VersionArgs),
    /// Show the store's contents and what this machine gives containers
    Info(commands::info::InfoArgs),
    /// Write a shell completion script (bash, zsh, fish) to stdout
    Completion(commands::completion::Args),
    /// Writes the man pages (berth.1, berth-build.1, ...) into DIR (internal: used by
    /// scripts/install-docs)
    #[command(name = "__man", hide = true)]
    Man { dir: PathBuf },
}

/// An error that is the user's input, not berth's failure: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The command line as clap derives it, with the examples of the main commands.
fn command() -> clap::Command {
    examples::add(<Cli as clap::CommandFactory>::command())
}

impl Command {
    /// `system migrate`, which stops a rootless user's pause process from outside its
    /// namespace.
    fn is_system_migrate(&self) -> bool {
        matches!(
            self,
            Command::System {
                command: commands::system::Command::Migrate
            }
        )
    }
}

fn main() -> ExitCode {
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&command().get_matches())
        .unwrap_or_else(|e| e.exit());
    let is_run = matches!(cli.command, Command::Run(_) | Command::Create(_));
    if let Command::Init { bundle } = &cli.command {
        // The container init: a fresh single-threaded process; it opens no store.
        std::process::exit(berth_runtime::init::main(bundle));
    }
    if let Command::ExecHelper { fds } = &cli.command {
        // A fresh single-threaded process that joins a container; it opens no store.
        std::process::exit(berth_runtime::exec::main(fds));
    }
    if let Command::Pause = cli.command {
        // A fresh process that holds the user namespace; it opens nothing.
        std::process::exit(berth_runtime::pause::main());
    }
    let result = run(cli);
    match result.and_then(|code| {
        stdio::finish()
            .map(|()| code)
            .map_err(|e| anyhow::Error::new(e).context("writing to stdout"))
    }) {
        Ok(code) => ExitCode::from(code),
        // Stdout's reader went away (`berth save | head -c 1`): the command had nothing left
        // to do but write, so it ends quietly, as `berth images | head -1` does.
        Err(e) if stdio::is_stdout_gone(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors quote Dockerfiles, images and registries: no escape reaches the terminal.
            errln!("Error: {}", output::terminal_safe_text(&format!("{e:#}")));
            ExitCode::from(exit_code(&e, is_run))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let rootless = rootless::enter_if_needed(&cli.command)?;
    let root = cli
        .root
        .unwrap_or_else(|| berth_store::default_root(rootless));
    let open = || wiring::open_store(&root);
    match cli.command {
        Command::Build(args) => commands::build::run(open()?, args),
        Command::Pull(args) => commands::registry::pull(open()?, args),
        Command::Push(args) => commands::registry::push(open()?, args),
        Command::Login(args) => commands::registry::login(args),
        Command::Logout(args) => commands::registry::logout(args),
        Command::Tags(args) => commands::registry::tags(args),
        Command::Copy(args) => commands::copy::run(open()?, args),
        Command::Images(args) => commands::images::run(&*open()?, args),
        Command::Tag(args) => commands::tag::run(&*open()?, args),
        Command::Rmi(args) => commands::rmi::run(&*open()?, args),
        Command::Inspect(args) => commands::inspect::run(&*open()?, args),
        Command::History(args) => commands::history::run(&*open()?, args),
        Command::Import(args) => commands::import::run(&*open()?, args),
        Command::Save(args) => commands::save::run(&*open()?, args),
        Command::Load(args) => commands::load::run(open()?, args),
        Command::System {
            command: commands::system::Command::Migrate,
        } => commands::system::migrate(),
        Command::System { command } => commands::system::run(&*open()?, command),
        Command::Run(args) => commands::run::run(open()?, args),
        Command::Create(args) => commands::start::create_command(open()?, args),
        Command::Start(args) => commands::start::start(&open()?, args),
        Command::Restart(args) => commands::start::restart(&open()?, args),
        Command::Ps(args) => commands::ps::run(&*open()?, args),
        Command::Rm(args) => commands::rm::run(&*open()?, args),
        Command::Logs(args) => commands::lifecycle::logs(&*open()?, args),
        Command::Stop(args) => commands::lifecycle::stop(&*open()?, args),
        Command::Kill(args) => commands::lifecycle::kill(&*open()?, args),
        Command::Exec(args) => commands::exec::run(&*open()?, args),
        Command::Cp(args) => commands::cp::run(&*open()?, args),
        Command::Commit(args) => commands::commit::run(&*open()?, args),
        Command::Diff(args) => commands::diff::run(&*open()?, args),
        Command::Export(args) => commands::export::run(&*open()?, args),
        Command::Top(args) => commands::top::run(&*open()?, args),
        Command::Wait(args) => commands::lifecycle::wait(&*open()?, args),
        Command::Attach(args) => commands::attach::run(&*open()?, args),
        Command::Volume { command } => commands::volume::run(&*open()?, command),
        Command::Network { command } => commands::network::run(&*open()?, command),
        Command::Image { command } => commands::prune::image(&*open()?, command),
        Command::Container { command } => commands::prune::container(&*open()?, command),
        Command::Debug { command } => commands::debug::run(command),
        Command::Monitor { dir, restarting } => launch::monitor(&*open()?, &dir, restarting),
        Command::Init { .. } | Command::ExecHelper { .. } | Command::Pause => {
            unreachable!("handled in main")
        }
        Command::Unshare(args) => commands::unshare::run(args),
        Command::Version(args) => commands::info::version(args),
        Command::Info(args) => commands::info::info(&*open()?, args),
        Command::Completion(args) => commands::completion::completion(command(), args),
        Command::Man { dir } => commands::completion::man_pages(command(), &dir),
    }
}

/// 2 when the chain holds an input error (a bad reference, platform or usage), else 1;
/// `run` says 125 for any failure of its own, as Docker does.
fn exit_code(e: &anyhow::Error, is_run: bool) -> u8 {
    if is_run {
        return 125;
    }
    let input = e.chain().any(|c| {
        c.is::<UsageError>()
            || c.is::<berth_oci::ReferenceError>()
            || c.is::<berth_oci::platform::PlatformError>()
            || c.is::<berth_oci::DigestError>()
            || matches!(
                c.downcast_ref::<berth_store::StoreError>(),
                Some(berth_store::StoreError::Reference(_))
            )
    });
    if input { 2 } else { 1 }
}

/// Runs a future to completion on a multi-threaded runtime (copies run blobs in parallel).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the async runtime")
        .block_on(f)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        super::command().debug_assert();
    }

    /// The visible commands and their arguments, with their full names (`berth system prune`).
    fn visible(cmd: &clap::Command, name: &str, out: &mut Vec<(String, clap::Command)>) {
        out.push((name.to_owned(), cmd.clone()));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.get_name() != "help" {
                visible(sub, &format!("{name} {}", sub.get_name()), out);
            }
        }
    }

    #[test]
    fn every_command_argument_and_flag_is_described() {
        let mut cmd = super::command();
        cmd.build();
        let mut all = Vec::new();
        visible(&cmd, "berth", &mut all);
        let mut missing = Vec::new();
        for (name, c) in &all {
            if c.get_about().is_none() {
                missing.push(format!("{name}: no about"));
            }
            for arg in c.get_arguments().filter(|a| !a.is_hide_set()) {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{name}: {}", arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "undescribed:\n{}", missing.join("\n"));
    }

    #[test]
    fn the_main_commands_show_examples() {
        let mut cmd = super::command();
        cmd.build();
        let mut all = Vec::new();
        visible(&cmd, "berth", &mut all);
        for main in [
            "berth build",
            "berth run",
            "berth pull",
            "berth push",
            "berth images",
            "berth ps",
            "berth inspect",
            "berth copy",
            "berth login",
            "berth system prune",
        ] {
            let (_, c) = all.iter().find(|(n, _)| n == main).expect(main);
            let after = c.get_after_long_help().map(|h| h.to_string());
            assert!(
                after
                    .as_deref()
                    .is_some_and(|h| h.contains("Examples:") && h.contains(main)),
                "{main}: no examples in its long help"
            );
        }
    }
}
