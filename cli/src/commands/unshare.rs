//! `berth unshare [CMD [ARG...]]`: a command (the user's shell by default) in berth's user
//! namespace, where a rootless store's files show the owners their images gave them and can
//! be removed (as `buildah unshare` and `podman unshare`). As root it runs the command as is.

use std::os::unix::process::CommandExt;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The command and its arguments (default: $SHELL, else /bin/sh)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    command: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut words = args.command.into_iter();
    let program = words.next().unwrap_or_else(|| {
        std::env::var("SHELL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".to_owned())
    });
    let err = std::process::Command::new(&program).args(words).exec();
    Err(anyhow::Error::new(err).context(format!("running {program}")))
}
