//! `berth network ls`: the networks a container or RUN step can be on. berth has Docker's two
//! built-in networks that need no bridge: `host` (the host's network stack) and `none` (only
//! a loopback interface); `run --network` and `build --network` name them.

use serde_json::{Value, json};

use crate::UsageError;
use crate::output::print_table;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Only print network IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate network IDs
    #[arg(long)]
    no_trunc: bool,
    /// Only networks that match: `name=TEXT` (a part of the name), `driver=DRIVER`,
    /// `id=PREFIX`, `scope=local`; one key's values are ORed, keys ANDed
    #[arg(short, long, value_name = "FILTER")]
    filter: Vec<String>,
    /// Output format: `table`, `json`, or a Go template
    ///
    /// Fields: .ID .Name .Driver .Scope .IPv6 .Internal .Labels .CreatedAt.
    /// Examples: `--format '{{.Name}}'`, `--format 'table {{.Name}}\t{{.Driver}}'`.
    #[arg(long, default_value = "table", verbatim_doc_comment)]
    format: String,
}

pub fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Ls(args) => ls(args),
    }
}

/// The built-in networks: (name, driver). Their IDs are the digest of their names, so they
/// are the same on every machine.
const NETWORKS: [(&str, &str); 2] = [("host", "host"), ("none", "null")];

fn network(name: &str, driver: &str) -> Value {
    json!({
        "CreatedAt": "",
        "Driver": driver,
        "ID": berth_oci::Digest::of(format!("berth network {name}").as_bytes()).hex(),
        "IPv6": "false",
        "Internal": "false",
        "Labels": "",
        "Name": name,
        "Scope": "local",
    })
}

fn matches(net: &Value, filters: &[(String, String)]) -> bool {
    let field = |k: &str| net[k].as_str().unwrap_or_default().to_owned();
    let keys: std::collections::BTreeSet<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.into_iter().all(|key| {
        filters
            .iter()
            .filter(|(k, _)| k == key)
            .any(|(_, v)| match key {
                "name" => field("Name").contains(v.as_str()),
                "driver" => field("Driver") == *v,
                "id" => field("ID").starts_with(v.as_str()),
                _ => field("Scope") == *v,
            })
    })
}

fn ls(args: LsArgs) -> anyhow::Result<u8> {
    let mut filters = Vec::new();
    for f in &args.filter {
        match f.split_once('=') {
            Some((k @ ("name" | "driver" | "id" | "scope"), v)) => {
                filters.push((k.to_owned(), v.to_owned()))
            }
            _ => {
                return Err(UsageError(format!(
                    "--filter {f:?}: expected KEY=VALUE with KEY one of name, driver, id, scope"
                ))
                .into());
            }
        }
    }
    let nets: Vec<Value> = NETWORKS
        .iter()
        .map(|(n, d)| network(n, d))
        .filter(|n| matches(n, &filters))
        .collect();
    let id = |n: &Value| {
        let id = n["ID"].as_str().unwrap_or_default().to_owned();
        match args.no_trunc {
            true => id,
            false => id[..12].to_owned(),
        }
    };
    if args.quiet {
        for n in &nets {
            outln!("{}", id(n));
        }
        return Ok(0);
    }
    use crate::template::Format;
    match Format::parse(&args.format).map_err(|e| UsageError(e.to_string()))? {
        Format::Table => {
            let rows: Vec<Vec<String>> = nets
                .iter()
                .map(|n| {
                    ["Name", "Driver", "Scope"]
                        .iter()
                        .fold(vec![id(n)], |mut row, k| {
                            row.push(n[*k].as_str().unwrap_or_default().to_owned());
                            row
                        })
                })
                .collect();
            print_table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows);
        }
        Format::Json => {
            for n in &nets {
                outln!("{n}");
            }
        }
        Format::Template { template, table } => {
            let headers = json!({
                "CreatedAt": "CREATED",
                "Driver": "DRIVER",
                "ID": "NETWORK ID",
                "IPv6": "IPV6",
                "Internal": "INTERNAL",
                "Labels": "LABELS",
                "Name": "NAME",
                "Scope": "SCOPE",
            });
            crate::template::print_rows(&template, table, (&headers, None), &nets, &[])
                .map_err(|e| UsageError(e.to_string()))?;
        }
    }
    Ok(0)
}
