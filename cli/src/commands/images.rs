//! `berth images`: the store's images as a table like `docker images`, JSON lines, or a Go
//! template per image; `--filter` as Docker's.

use berth_store::{Image, Store};
use serde_json::{Value, json};

use crate::filters::{Filters, glob_match, label_matches};
use crate::output::{human_size, json_terminal_safe, print_table, since};
use crate::template::Format;

/// The filters `images` takes.
const FILTERS: &[&str] = &["dangling", "label", "reference", "before", "since"];

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate IDs
    #[arg(long)]
    no_trunc: bool,
    /// Output format: `table`, `json`, or a Go template
    ///
    /// `table` (the default) prints the usual columns; `json` one JSON object per image
    /// and tag; `TEMPLATE` renders a Go template for each (a line each); `table TEMPLATE`
    /// renders it under a header made of the fields' column names, aligned at tabs (`\t`).
    ///
    /// Fields: .ID .Repository .Tag .Digest .CreatedSince .CreatedAt .Size .VirtualSize
    /// .SharedSize .UniqueSize .Containers. Functions: json join split lower upper title
    /// pad truncate len index print println printf eq ne lt le gt ge and or not; blocks
    /// if/else/end, range/end, with/end. A field that does not exist is an error.
    ///
    /// Examples: `--format '{{.Repository}}:{{.Tag}}'`,
    /// `--format 'table {{.ID}}\t{{.Repository}}\t{{.Size}}'`, `--format '{{json .}}'`.
    #[arg(long, default_value = "table", verbatim_doc_comment)]
    format: String,
    /// Filter output: `key=value`, repeatable (one key's values are ORed, keys ANDed)
    ///
    /// dangling=true|false (untagged images), label=KEY or label=KEY=VALUE,
    /// reference=PATTERN (a glob on REPOSITORY or REPOSITORY:TAG, `*` stops at `/`),
    /// before=IMAGE, since=IMAGE (created before or after that image).
    #[arg(short, long = "filter", value_name = "FILTER", verbatim_doc_comment)]
    filter: Vec<String>,
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

impl Row {
    /// The row as Docker's `images --format` sees it.
    fn value(&self) -> Value {
        json!({
            "Containers": "N/A",
            "CreatedAt": self.created.clone().unwrap_or_default(),
            "CreatedSince": since(self.created.as_deref()),
            "Digest": self.digest,
            "ID": self.id,
            "Repository": self.repository,
            "SharedSize": "N/A",
            "Size": human_size(self.size),
            "Tag": self.tag,
            "UniqueSize": "N/A",
            "VirtualSize": human_size(self.size),
        })
    }
}

/// Docker's column names for the fields, for `--format 'table ...'`.
fn headers() -> Value {
    json!({
        "Containers": "CONTAINERS",
        "CreatedAt": "CREATED AT",
        "CreatedSince": "CREATED",
        "Digest": "DIGEST",
        "ID": "IMAGE ID",
        "Repository": "REPOSITORY",
        "SharedSize": "SHARED SIZE",
        "Size": "SIZE",
        "Tag": "TAG",
        "UniqueSize": "UNIQUE SIZE",
        "VirtualSize": "VIRTUAL SIZE",
    })
}

/// An image's creation time, for `before` and `since`.
fn created_time(image: &Image) -> Option<std::time::SystemTime> {
    crate::output::parse_time(image.config.created.as_deref()?)
}

/// Whether an image passes the filters that look at the image as a whole.
fn image_matches(
    image: &Image,
    filters: &Filters,
    dangling: &[bool],
    before: &[Option<std::time::SystemTime>],
    after: &[Option<std::time::SystemTime>],
) -> bool {
    let untagged = image.tags.iter().all(|t| t.tag().is_none());
    let labels = image.config.config.labels.clone().unwrap_or_default();
    let created = created_time(image);
    (dangling.is_empty() || dangling.contains(&untagged))
        && filters.any("label", |l| label_matches(l, &labels))
        && (before.is_empty()
            || before
                .iter()
                .any(|b| matches!((created, b), (Some(c), Some(b)) if c < *b)))
        && (after.is_empty()
            || after
                .iter()
                .any(|a| matches!((created, a), (Some(c), Some(a)) if c > *a)))
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let format = Format::parse(&args.format).map_err(|e| crate::UsageError(e.to_string()))?;
    let filters = Filters::parse(&args.filter, FILTERS)?;
    let dangling = filters.bool_values("dangling")?;
    let reference_time = |name: &String| -> anyhow::Result<Option<std::time::SystemTime>> {
        Ok(created_time(&store.resolve(name)?))
    };
    let before = filters
        .values("before")
        .iter()
        .map(reference_time)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let after = filters
        .values("since")
        .iter()
        .map(reference_time)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let by_reference = !filters.values("reference").is_empty();
    let repository = args
        .repository
        .as_deref()
        .map(crate::wiring::parse_reference)
        .transpose()?;
    let mut rows = Vec::new();
    for image in store.images()? {
        if !image_matches(&image, &filters, &dangling, &before, &after) {
            continue;
        }
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
        if image.tags.is_empty() && repository.is_none() && !by_reference {
            rows.push(base);
            continue;
        }
        for tag in &image.tags {
            if repository
                .as_ref()
                .is_some_and(|f| f.repository() != tag.repository())
            {
                continue;
            }
            let familiar = tag.familiar_repository();
            let name = tag.tag().unwrap_or("<none>");
            // Docker matches the pattern against the name with and without its tag.
            if !filters.any("reference", |p| {
                glob_match(p, &familiar) || glob_match(p, &format!("{familiar}:{name}"))
            }) {
                continue;
            }
            rows.push(Row {
                repository: familiar,
                tag: name.to_owned(),
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
    match format {
        Format::Table => {
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
        Format::Json => {
            for r in &rows {
                outln!("{}", json_terminal_safe(&r.value().to_string()));
            }
        }
        Format::Template { template, table } => {
            let values: Vec<Value> = rows.iter().map(Row::value).collect();
            crate::template::print_rows(&template, table, (&headers(), None), &values, &[])
                .map_err(|e| crate::UsageError(e.to_string()))?;
        }
    }
    Ok(0)
}
