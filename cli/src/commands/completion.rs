//! `berth completion bash|zsh|fish` and the man pages (`berth __man DIR`), both generated
//! from the clap definitions, so they name every command and flag the binary has.
//! `scripts/install-docs` writes both where the system's shells and `man` look.

use std::path::Path;

use anyhow::Context;

/// The shells berth writes completions for.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Examples:
  source <(berth completion bash)                          # this bash session
  berth completion bash > /etc/bash_completion.d/berth
  berth completion zsh > \"${fpath[1]}/_berth\"
  berth completion fish > ~/.config/fish/completions/berth.fish")]
pub struct Args {
    /// The shell to write the completion script for
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the completion script of `cmd` for `args.shell` to stdout.
pub fn completion(mut cmd: clap::Command, args: Args) -> anyhow::Result<u8> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "berth", &mut out);
    crate::stdio::write_stdout(&out).context("writing the completion script")?;
    Ok(0)
}

/// Writes `berth.1` and a page per visible subcommand (`berth-build.1`,
/// `berth-system-prune.1`, ...) into `dir`.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<u8> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = cmd;
    cmd.build();
    write_page(&cmd, "berth", dir)?;
    Ok(0)
}

/// Writes the page of `cmd` (whose full name is `name`, as in `berth system prune`) and of
/// its visible subcommands.
fn write_page(cmd: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    let page = name.replace(' ', "-");
    let shown = cmd
        .clone()
        .display_name(page.clone())
        .bin_name(name.to_owned());
    let mut bytes = Vec::new();
    clap_mangen::Man::new(shown)
        .manual("berth Manual")
        .render(&mut bytes)
        .context("rendering a man page")?;
    let path = dir.join(format!("{page}.1"));
    crate::output_file::write_bytes(&path, &bytes, crate::output_file::PUBLIC_MODE)
        .with_context(|| format!("writing {}", path.display()))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_page(sub, &format!("{name} {}", sub.get_name()), dir)?;
    }
    Ok(())
}
