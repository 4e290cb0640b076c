//! `berth ps [-a] [-q]`: containers, like `docker ps`, as a table or a Go template per
//! container; `--filter` as Docker's.

use std::collections::BTreeMap;

use berth_store::Store;
use berth_store::containers::ContainerRecord;
use serde_json::{Value, json};

use crate::filters::{Filters, label_matches};
use crate::output::{json_terminal_safe, print_table, since, terminal_safe};
use crate::template::Format;

/// The filters `ps` takes.
const FILTERS: &[&str] = &["status", "name", "label", "ancestor"];
/// The states Docker's `status` filter names.
const STATES: &[&str] = &[
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show all containers (default: running ones)
    #[arg(short, long)]
    all: bool,
    /// Only show IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Output format: `table`, `json`, or a Go template
    ///
    /// `table` (the default) prints the usual columns; `json` one JSON object per
    /// container; `TEMPLATE` renders a Go template for each (a line each); `table TEMPLATE`
    /// renders it under a header made of the fields' column names, aligned at tabs (`\t`).
    ///
    /// Fields: .ID .Image .Command .CreatedAt .RunningFor .Ports .State .Status .Names
    /// .Labels .Mounts .Networks, and .Label "KEY" (one label's value). Functions and
    /// blocks as `berth images --help` lists. A field that does not exist is an error.
    /// (.Networks names a bridge network; .Ports, Docker's `0.0.0.0:8080->80/tcp`, while
    /// the container runs.)
    ///
    /// Examples: `--format '{{.ID}} {{.Status}}'`,
    /// `--format 'table {{.Names}}\t{{.Image}}\t{{.Label "version"}}'`.
    #[arg(long, default_value = "table", verbatim_doc_comment)]
    format: String,
    /// Filter output: `key=value`, repeatable (one key's values are ORed, keys ANDed)
    ///
    /// status=created|running|exited|... (also lists stopped containers without -a),
    /// name=SUBSTRING, label=KEY or label=KEY=VALUE (the image's labels),
    /// ancestor=IMAGE (made from that image, by name or ID).
    #[arg(short, long = "filter", value_name = "FILTER", verbatim_doc_comment)]
    filter: Vec<String>,
}

/// Docker's column names for the fields, for `--format 'table ...'`.
fn headers() -> Value {
    json!({
        "Command": "COMMAND",
        "CreatedAt": "CREATED AT",
        "ID": "CONTAINER ID",
        "Image": "IMAGE",
        "Labels": "LABELS",
        "Mounts": "MOUNTS",
        "Names": "NAMES",
        "Networks": "NETWORKS",
        "Ports": "PORTS",
        "RunningFor": "CREATED",
        "State": "STATE",
        "Status": "STATUS",
    })
}

/// The state Docker names for a container.
fn state(r: &ContainerRecord, up: bool) -> &'static str {
    if up && r.status == "restarting" {
        "restarting"
    } else if up {
        "running"
    } else if r.status == "created" {
        "created"
    } else {
        "exited"
    }
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let format = Format::parse(&args.format).map_err(|e| crate::UsageError(e.to_string()))?;
    let filters = Filters::parse(&args.filter, FILTERS)?;
    for s in filters.values("status") {
        if !STATES.contains(&s.as_str()) {
            return Err(crate::UsageError(format!(
                "invalid filter status={s:?}: use one of {}",
                STATES.join(", ")
            ))
            .into());
        }
    }
    // An image a filter names that is not in the store matches no container.
    let ancestors: Vec<(String, Option<berth_oci::Digest>)> = filters
        .values("ancestor")
        .iter()
        .map(|a| (a.clone(), store.resolve(a).ok().map(|i| i.root.digest)))
        .collect();
    let all = args.all || !filters.values("status").is_empty();
    let mut rows = Vec::new();
    let mut hidden = Vec::new();
    let mut list = store.container_records()?;
    list.sort_by(|a, b| b.created.cmp(&a.created));
    for r in list {
        let up = crate::containers::alive(&r);
        if !up && !all {
            continue;
        }
        let state = state(&r, up);
        let labels: BTreeMap<String, String> = store
            .image_by_manifest(&r.image)
            .ok()
            .and_then(|i| i.config.config.labels)
            .unwrap_or_default();
        let name = r.name.clone().unwrap_or_default();
        let keep = filters.any("status", |s| s == state)
            && filters.any("name", |n| name.contains(n))
            && filters.any("label", |l| label_matches(l, &labels))
            && (ancestors.is_empty()
                || ancestors.iter().any(|(given, digest)| {
                    digest.as_ref() == Some(&r.image) || *given == r.image_name
                }));
        if !keep {
            continue;
        }
        let id = if args.no_trunc {
            r.id.clone()
        } else {
            r.id[..12].to_owned()
        };
        if args.quiet {
            outln!("{id}");
            continue;
        }
        let status = match state {
            "running" => format!(
                "Up{}",
                crate::health::status_suffix(&store.container_dir(&r.id)?)
            ),
            "created" => "Created".to_owned(),
            "restarting" => format!("Restarting ({})", r.exit_code.unwrap_or(-1)),
            _ => format!("Exited ({})", r.exit_code.unwrap_or(-1)),
        };
        // The image's command, escaped before it is cut (an escape is never cut in two).
        let mut command = terminal_safe(&r.command.join(" ")).into_owned();
        if !args.no_trunc && command.chars().count() > 20 {
            command = command.chars().take(19).collect::<String>() + "…";
        }
        let (networks, ports) = crate::networking::ps_fields(store, &r.id, state == "running");
        let label_map: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        rows.push(json!({
            "Command": format!("\"{command}\""),
            "CreatedAt": r.created,
            "ID": id,
            "Image": r.image_name,
            "Labels": crate::template::labels_text(&label_map),
            "Mounts": r.mounts.join(","),
            "Names": name,
            "Networks": networks,
            "Ports": ports,
            "RunningFor": since(Some(&r.created)),
            "State": state,
            "Status": status,
        }));
        hidden.push(json!({ "Label": label_map }));
    }
    if args.quiet {
        return Ok(0);
    }
    match format {
        Format::Table => {
            let field = |row: &Value, k: &str| row[k].as_str().unwrap_or_default().to_owned();
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|row| {
                    ["ID", "Image", "Command", "RunningFor", "Status", "Names"]
                        .iter()
                        .map(|k| field(row, k))
                        .collect()
                })
                .collect();
            print_table(
                &[
                    "CONTAINER ID",
                    "IMAGE",
                    "COMMAND",
                    "CREATED",
                    "STATUS",
                    "NAMES",
                ],
                &table,
            );
        }
        Format::Json => {
            for row in &rows {
                outln!("{}", json_terminal_safe(&row.to_string()));
            }
        }
        Format::Template { template, table } => {
            crate::template::print_rows(
                &template,
                table,
                (&headers(), Some(&json!({ "Label": "LABEL" }))),
                &rows,
                &hidden,
            )
            .map_err(|e| crate::UsageError(e.to_string()))?;
        }
    }
    Ok(0)
}
