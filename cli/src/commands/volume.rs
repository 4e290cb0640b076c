//! `berth volume create|ls|inspect|rm|prune`: the store's volumes (`run -v NAME:/path`
//! mounts one, `run -v /path` makes an anonymous one). Each is a directory of the store
//! (`volumes/<name>/_data`, the store's volumes.rs); a volume a container uses, running or
//! stopped, is kept until that container is removed.

use std::collections::BTreeMap;

use berth_store::Store;
use berth_store::volumes::{VolumeRecord, VolumeRemoval};

use crate::UsageError;
use crate::output::{human_size, print_table};
use crate::prune::{Filters, print_volumes, prune_volumes};

pub const HELP: &str = "\
Manage volumes: directories of the store that containers mount with `run -v NAME:/path`
(made on first use) or `run -v /path` (an anonymous volume). A volume a container uses,
running or stopped, is kept until that container is removed.

Examples:
  berth volume create --label app=web data
  berth run -d -v data:/srv busybox sh -c 'date >> /srv/log'
  berth volume ls
  berth volume inspect data
  berth volume rm data
  berth volume prune -a -f";

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a volume (a random name when none is given); prints its name
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show volumes' details as JSON
    Inspect(InspectArgs),
    /// Remove volumes (refused for a volume a container uses)
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove volumes no container uses
    #[command(long_about = PRUNE_HELP)]
    Prune(PruneArgs),
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  berth volume create --label app=web data")]
pub struct CreateArgs {
    /// Set a label on the volume (KEY=VALUE, or KEY for an empty value)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Volume driver: only `local` (a directory of the store) exists
    #[arg(short = 'd', long, default_value = "local", value_parser = ["local"])]
    driver: String,
    /// The volume's name ([a-zA-Z0-9][a-zA-Z0-9_.-]+); a random one when missing
    name: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Only print volume names
    #[arg(short, long)]
    quiet: bool,
    /// Only volumes that match: `dangling=true|false` (no container uses it, or one does),
    /// `name=TEXT` (a part of the name), `label=KEY[=VALUE]` (every one given), `driver=local`
    #[arg(short, long, value_name = "FILTER")]
    filter: Vec<String>,
    /// Output format: `table`, `json`, or a Go template
    ///
    /// `table` (the default) prints DRIVER and VOLUME NAME; `json` one JSON object per
    /// volume; `TEMPLATE` renders a Go template for each (a line each); `table TEMPLATE`
    /// renders it under a header of Docker's column names, aligned at tabs (`\t`).
    ///
    /// Fields: .Name .Driver .Scope .Mountpoint .Labels .Label "KEY" .Links .Size.
    /// Functions and blocks as `berth images --help` lists.
    ///
    /// Examples: `--format '{{.Name}}'`, `--format 'table {{.Name}}\t{{.Labels}}'`.
    #[arg(long, default_value = "table", verbatim_doc_comment)]
    format: String,
}

/// `volume ls --filter`: different keys must all hold, as must every label; several
/// `name=` or `dangling=` values are alternatives.
#[derive(Default)]
struct LsFilter {
    dangling: Vec<bool>,
    names: Vec<String>,
    labels: Vec<(String, Option<String>)>,
    drivers: Vec<String>,
}

impl LsFilter {
    fn parse(values: &[String]) -> Result<LsFilter, UsageError> {
        let mut f = LsFilter::default();
        for v in values {
            let Some((key, value)) = v.split_once('=') else {
                return Err(UsageError(format!(
                    "--filter {v:?}: expected KEY=VALUE (dangling, name, label, driver)"
                )));
            };
            match key {
                "dangling" => f.dangling.push(match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(UsageError(format!(
                            "--filter {v:?}: dangling is true or false"
                        )));
                    }
                }),
                "name" => f.names.push(value.to_owned()),
                "label" => f.labels.push(match value.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (value.to_owned(), None),
                }),
                "driver" => f.drivers.push(value.to_owned()),
                _ => {
                    return Err(UsageError(format!(
                        "--filter {v:?}: invalid filter {key:?} (dangling, name, label, driver)"
                    )));
                }
            }
        }
        Ok(f)
    }

    fn matches(&self, v: &VolumeRecord, used: bool) -> bool {
        (self.dangling.is_empty() || self.dangling.contains(&!used))
            && (self.names.is_empty() || self.names.iter().any(|n| v.name.contains(n.as_str())))
            && (self.drivers.is_empty() || self.drivers.iter().any(|d| d == "local"))
            && self
                .labels
                .iter()
                .all(|(k, want)| match (v.labels.get(k), want) {
                    (Some(have), Some(want)) => have == want,
                    (Some(_), None) => true,
                    (None, _) => false,
                })
    }
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Format the output with a Go template over each volume's JSON object (a line each),
    /// e.g. `-f '{{.Mountpoint}}'`; `json` (the default) prints the JSON array
    #[arg(short, long)]
    format: Option<String>,
    /// Volumes by name
    #[arg(required = true, value_name = "VOLUME")]
    volumes: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Do not fail for a volume that does not exist (one in use is still kept)
    #[arg(short, long)]
    force: bool,
    /// Volumes by name
    #[arg(required = true, value_name = "VOLUME")]
    volumes: Vec<String>,
}

const PRUNE_HELP: &str = "\
Remove volumes no container uses (running or stopped). Without -a only anonymous volumes
(made by `run -v /path`) go, as in Docker 23 and later; with -a named ones too. Asks first
unless -f.

Examples:
  berth volume prune -f
  berth volume prune -a --filter label=tmp -f";

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Remove every unused volume, named ones too, not only anonymous ones
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    force: bool,
    /// Only volumes that match: `label=KEY[=VALUE]`, `label!=KEY[=VALUE]`
    #[arg(long, value_name = "FILTER")]
    filter: Vec<String>,
}

pub fn run(store: &Store, command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Create(args) => create(store, args),
        Command::Ls(args) => ls(store, args),
        Command::Inspect(args) => inspect(store, args),
        Command::Rm(args) => rm(store, args),
        Command::Prune(args) => prune(store, args),
    }
}

/// `KEY=VALUE` (or `KEY`) labels.
fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>, UsageError> {
    let mut out = BTreeMap::new();
    for l in labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            return Err(UsageError(format!("--label {l:?}: a label needs a key")));
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

fn create(store: &Store, args: CreateArgs) -> anyhow::Result<u8> {
    let labels = parse_labels(&args.labels)?;
    let name = args.name.unwrap_or_else(berth_store::volumes::random_name);
    let (_, record, made) = store.create_volume(&name, labels.clone())?;
    if !made && !labels.is_empty() && record.labels != labels {
        return Err(anyhow::anyhow!(
            "volume {name} already exists with other labels"
        ));
    }
    outln!("{name}");
    Ok(0)
}

fn ls(store: &Store, args: LsArgs) -> anyhow::Result<u8> {
    let filter = LsFilter::parse(&args.filter)?;
    let records = store.container_records()?;
    let volumes: Vec<_> = store
        .volumes()?
        .into_iter()
        .filter(|v| {
            let used = records.iter().any(|c| c.volumes.contains(&v.name));
            filter.matches(v, used)
        })
        .collect();
    if args.quiet {
        for v in &volumes {
            outln!("{}", v.name);
        }
        return Ok(0);
    }
    use crate::template::Format;
    let format = Format::parse(&args.format).map_err(|e| UsageError(e.to_string()))?;
    let template = match format {
        Format::Table => {
            let rows: Vec<Vec<String>> = volumes
                .iter()
                .map(|v| vec!["local".to_owned(), v.name.clone()])
                .collect();
            print_table(&["DRIVER", "VOLUME NAME"], &rows);
            return Ok(0);
        }
        Format::Json => None,
        Format::Template { template, table } => Some((template, table)),
    };
    let mut values = Vec::new();
    let mut hidden = Vec::new();
    for v in &volumes {
        let labels: serde_json::Map<String, serde_json::Value> = v
            .labels
            .iter()
            .map(|(k, val)| (k.clone(), serde_json::Value::String(val.clone())))
            .collect();
        values.push(serde_json::json!({
            "Driver": "local",
            "Labels": crate::template::labels_text(&labels),
            "Links": "N/A",
            "Mountpoint": store.volume_mountpoint(&v.name)?,
            "Name": v.name,
            "Scope": "local",
            "Size": "N/A",
        }));
        hidden.push(serde_json::json!({ "Label": labels }));
    }
    match template {
        None => {
            for v in &values {
                outln!("{}", crate::output::json_terminal_safe(&v.to_string()));
            }
        }
        Some((template, table)) => {
            let headers = serde_json::json!({
                "Driver": "DRIVER",
                "Labels": "LABELS",
                "Links": "LINKS",
                "Mountpoint": "MOUNTPOINT",
                "Name": "VOLUME NAME",
                "Scope": "SCOPE",
                "Size": "SIZE",
            });
            crate::template::print_rows(
                &template,
                table,
                (&headers, Some(&serde_json::json!({ "Label": "LABEL" }))),
                &values,
                &hidden,
            )
            .map_err(|e| UsageError(e.to_string()))?;
        }
    }
    Ok(0)
}

/// Docker's `volume inspect` object.
fn inspect_json(store: &Store, v: &VolumeRecord) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::json!({
        "CreatedAt": v.created,
        "Driver": "local",
        "Labels": v.labels,
        "Mountpoint": store.volume_mountpoint(&v.name)?,
        "Name": v.name,
        "Options": null,
        "Scope": "local",
    }))
}

fn inspect(store: &Store, args: InspectArgs) -> anyhow::Result<u8> {
    let mut found = Vec::new();
    let mut failed = false;
    for name in &args.volumes {
        match store.volume_record(name) {
            Ok(Some(v)) => found.push(inspect_json(store, &v)?),
            Ok(None) => {
                errln!("Error: no such volume: {name}");
                failed = true;
            }
            Err(e) => {
                errln!(
                    "Error: {}",
                    crate::output::terminal_safe_text(&e.to_string())
                );
                failed = true;
            }
        }
    }
    match args.format.as_deref() {
        None | Some("json") => {
            let json = serde_json::to_string_pretty(&found)?;
            outln!("{}", crate::output::json_terminal_safe(&json));
        }
        Some(f) => {
            use crate::template::Format;
            let Format::Template {
                template,
                table: false,
            } = Format::parse(f).map_err(|e| UsageError(e.to_string()))?
            else {
                return Err(UsageError(format!(
                    "volume inspect takes a template or json, not {f:?}"
                ))
                .into());
            };
            for v in &found {
                let text = template.render(v).map_err(|e| UsageError(e.to_string()))?;
                outln!("{text}");
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn rm(store: &Store, args: RmArgs) -> anyhow::Result<u8> {
    let mut failed = false;
    for name in &args.volumes {
        match store.remove_volume(name) {
            Ok(VolumeRemoval::Removed { .. }) => outln!("{name}"),
            Ok(VolumeRemoval::Missing) if args.force => {}
            Ok(VolumeRemoval::Missing) => {
                errln!("Error: no such volume: {name}");
                failed = true;
            }
            Ok(VolumeRemoval::InUse(users)) => {
                errln!(
                    "Error: volume {name} is in use by container(s) {}: remove them first (berth rm)",
                    users
                        .iter()
                        .map(|id| &id[..id.len().min(12)])
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                failed = true;
            }
            Err(e) => {
                errln!(
                    "Error: {}",
                    crate::output::terminal_safe_text(&e.to_string())
                );
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn prune(store: &Store, args: PruneArgs) -> anyhow::Result<u8> {
    let filters = Filters::parse(&args.filter, &["label", "label!"])?;
    let warning = if args.all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !crate::prune::confirm(warning, args.force)? {
        return Ok(0);
    }
    let (removed, bytes) = prune_volumes(store, args.all, &filters)?;
    print_volumes(&removed);
    outln!("Total reclaimed space: {}", human_size(bytes));
    Ok(0)
}
