//! `berth attach CONTAINER`: a detached container's output from now on, until it exits;
//! then berth exits with the container's exit code, as `docker attach` does.
//!
//! A detached container writes into its log (its monitor's stdout and stderr, run.rs), so
//! attaching is following that log from its current end, as `logs -f` follows it from the
//! start. Stdin is not connected: a detached container reads /dev/null (or, with `-dt`, a
//! terminal only its monitor holds), and nothing can reach it later.

use berth_store::Store;

pub const HELP: &str = "\
Follow a detached container's output (`run -d`) from now on, until it exits; then exit
with the container's exit code. Both of its streams arrive on stdout (its log keeps them
together).

Stdin is not connected: berth's detached containers read /dev/null (with -dt, a terminal
only their monitor holds), so `attach` shows output only (--no-stdin says so and is the
only mode).

With --sig-proxy (the default) Ctrl-C (SIGINT), SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and
SIGUSR2 sent to `attach` go to the container's main process (which may ignore them: a
PID 1 without a handler does); with --sig-proxy=false Ctrl-C ends `attach` and the
container keeps running.

Examples:
  berth run -d --name web busybox sh -c 'while :; do date; sleep 1; done'
  berth attach web
  berth attach --sig-proxy=false web";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Do not attach stdin (berth never does: nothing reaches a detached container's stdin)
    #[arg(long)]
    no_stdin: bool,
    /// Pass the signals `attach` receives (SIGINT: Ctrl-C, SIGTERM, ...) to the container
    #[arg(
        long,
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    sig_proxy: bool,
    /// The running detached container, by name or ID (or a unique ID prefix)
    container: String,
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    crate::follow::attach(store, &args.container, args.sig_proxy, args.no_stdin, None)
}
