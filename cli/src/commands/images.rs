//! `berth images`: the store's images as a table like `docker images`, or JSON lines.

use berth_store::Store;

use crate::output::{human_size, json_terminal_safe, print_table, since};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate IDs
    #[arg(long)]
    no_trunc: bool,
    /// Output format: `table` or `json` (one JSON object per line, as Docker)
    #[arg(long, default_value = "table")]
    format: String,
    /// Only images in this repository
    repository: Option<String>,
}

#[derive(Clone)]
struct Row {
    repository: String,
    tag: String,
    id: String,
    digest: String,
    created: Option<String>,
    size: u64,
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let filter = args
        .repository
        .as_deref()
        .map(crate::wiring::parse_reference)
        .transpose()?;
    let mut rows = Vec::new();
    for image in store.images()? {
        let id = if args.no_trunc {
            image.id().to_string()
        } else {
            image.id().short().to_owned()
        };
        let base = Row {
            repository: "<none>".into(),
            tag: "<none>".into(),
            id,
            digest: image.root.digest.to_string(),
            created: image.config.created.clone(),
            size: image.size(),
        };
        if image.tags.is_empty() && filter.is_none() {
            rows.push(base);
            continue;
        }
        for tag in &image.tags {
            if filter
                .as_ref()
                .is_some_and(|f| f.repository() != tag.repository())
            {
                continue;
            }
            rows.push(Row {
                repository: tag.familiar_repository(),
                tag: tag.tag().unwrap_or("<none>").to_owned(),
                ..base.clone()
            });
        }
    }
    rows.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then(a.repository.cmp(&b.repository))
            .then(a.tag.cmp(&b.tag))
    });
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in rows.iter().filter(|r| seen.insert(r.id.clone())) {
            outln!("{}", r.id);
        }
        return Ok(0);
    }
    match args.format.as_str() {
        "table" => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.repository.clone(),
                        r.tag.clone(),
                        r.id.clone(),
                        since(r.created.as_deref()),
                        human_size(r.size),
                    ]
                })
                .collect();
            print_table(
                &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
                &table,
            );
        }
        "json" => {
            for r in &rows {
                let line = serde_json::json!({
                    "Containers": "N/A",
                    "CreatedAt": r.created.clone().unwrap_or_default(),
                    "CreatedSince": since(r.created.as_deref()),
                    "Digest": r.digest,
                    "ID": r.id,
                    "Repository": r.repository,
                    "SharedSize": "N/A",
                    "Size": human_size(r.size),
                    "Tag": r.tag,
                    "UniqueSize": "N/A",
                    "VirtualSize": human_size(r.size),
                });
                outln!("{}", json_terminal_safe(&line.to_string()));
            }
        }
        other => {
            return Err(
                crate::UsageError(format!("unknown format {other:?}: use table or json")).into(),
            );
        }
    }
    Ok(0)
}
