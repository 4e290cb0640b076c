//! `berth history IMAGE`: the config's history, newest first, with each layer's size.

use berth_store::Store;
use serde_json::{Value, json};

use crate::output::{human_size, json_terminal_safe, print_table, since, terminal_safe};
use crate::template::Format;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Print sizes in bytes and dates as RFC 3339
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Output format: `table`, `json`, or a Go template
    ///
    /// `table` (the default) prints the usual columns; `json` one JSON object per layer;
    /// `TEMPLATE` renders a Go template for each (a line each); `table TEMPLATE` renders it
    /// under a header made of the fields' column names, aligned at tabs (`\t`).
    ///
    /// Fields: .ID .CreatedSince .CreatedAt .CreatedBy .Size .Comment. Functions and
    /// blocks as `berth images --help` lists. A field that does not exist is an error.
    ///
    /// Examples: `--format '{{.ID}}: {{.CreatedBy}}'`,
    /// `--format 'table {{.CreatedBy}}\t{{.Size}}'`.
    #[arg(long, default_value = "table", verbatim_doc_comment)]
    format: String,
    /// The image by name or ID
    image: String,
}

/// Docker's column names for the fields, for `--format 'table ...'`.
fn headers() -> Value {
    json!({
        "Comment": "COMMENT",
        "CreatedAt": "CREATED AT",
        "CreatedBy": "CREATED BY",
        "CreatedSince": "CREATED",
        "ID": "IMAGE",
        "Size": "SIZE",
    })
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let format = Format::parse(&args.format).map_err(|e| crate::UsageError(e.to_string()))?;
    let image = store.resolve(&args.image)?;
    let mut layers = image.manifest_value.layers.iter();
    let mut rows = Vec::new();
    let mut values = Vec::new();
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
        let size_text = if args.human {
            human_size(size)
        } else {
            size.to_string()
        };
        values.push(json!({
            "Comment": h.comment.clone().unwrap_or_default(),
            "CreatedAt": h.created.clone().unwrap_or_default(),
            "CreatedBy": created_by,
            "CreatedSince": since(h.created.as_deref()),
            "ID": id,
            "Size": size_text,
        }));
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
    values.reverse();
    match format {
        Format::Table => print_table(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &rows,
        ),
        Format::Json => {
            for v in &values {
                outln!("{}", json_terminal_safe(&v.to_string()));
            }
        }
        Format::Template { template, table } => {
            crate::template::print_rows(&template, table, (&headers(), None), &values, &[])
                .map_err(|e| crate::UsageError(e.to_string()))?;
        }
    }
    Ok(0)
}
