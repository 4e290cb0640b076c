//! `berth history IMAGE`: the config's history, newest first, with each layer's size.

use berth_store::Store;

use crate::output::{human_size, print_table, since, terminal_safe};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Print sizes in bytes and dates as RFC 3339
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// The image by name or ID
    image: String,
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let image = store.resolve(&args.image)?;
    let mut layers = image.manifest_value.layers.iter();
    let mut rows = Vec::new();
    let count = image.config.history.len();
    for (i, h) in image.config.history.iter().enumerate() {
        let size = if h.empty_layer {
            0
        } else {
            layers.next().map_or(0, |l| l.size)
        };
        let id = if i + 1 == count {
            image.id().short().to_owned()
        } else {
            "<missing>".to_owned()
        };
        // The image's text, escaped before it is cut (an escape is never cut in two).
        let mut created_by =
            terminal_safe(h.created_by.as_deref().unwrap_or_default()).into_owned();
        if !args.no_trunc && created_by.chars().count() > 45 {
            created_by = created_by.chars().take(44).collect::<String>() + "…";
        }
        let (created, size) = if args.human {
            (since(h.created.as_deref()), human_size(size))
        } else {
            (h.created.clone().unwrap_or_default(), size.to_string())
        };
        rows.push(vec![
            id,
            created,
            created_by,
            size,
            h.comment.clone().unwrap_or_default(),
        ]);
    }
    rows.reverse();
    print_table(
        &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        &rows,
    );
    Ok(0)
}
