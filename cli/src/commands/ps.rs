//! `berth ps [-a] [-q]`: containers, like `docker ps`.

use berth_store::Store;

use crate::output::{print_table, since, terminal_safe};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show all containers (default: running ones)
    #[arg(short, long)]
    all: bool,
    /// Only show IDs
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let mut rows = Vec::new();
    let mut list = store.container_records()?;
    list.sort_by(|a, b| b.created.cmp(&a.created));
    for r in list {
        let up = crate::containers::alive(&r);
        if !up && !args.all {
            continue;
        }
        if args.quiet {
            outln!("{}", &r.id[..12]);
            continue;
        }
        let status = if up {
            "Up".to_owned()
        } else {
            format!("Exited ({})", r.exit_code.unwrap_or(-1))
        };
        // The image's command, escaped before it is cut (an escape is never cut in two).
        let mut command = terminal_safe(&r.command.join(" ")).into_owned();
        if command.chars().count() > 20 {
            command = command.chars().take(19).collect::<String>() + "…";
        }
        rows.push(vec![
            r.id[..12].to_owned(),
            r.image_name.clone(),
            format!("\"{command}\""),
            since(Some(&r.created)),
            status,
            r.name.clone().unwrap_or_default(),
        ]);
    }
    if !args.quiet {
        print_table(
            &[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "NAMES",
            ],
            &rows,
        );
    }
    Ok(0)
}
