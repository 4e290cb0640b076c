//! `berth network create|ls|inspect|rm|prune`: the networks a container or RUN step can be
//! on. Built in: `bridge` (berth's default bridge, `berth0`, 10.88.0.0/16), `host` (the
//! host's network stack) and `none` (only a loopback interface); user networks are bridges
//! of their own (`br-<id>`), on which containers reach each other by name. Definitions and
//! leases are the store's (`berth_store::networks`), the kernel's side the runtime's
//! (`berth_runtime::net`), wired by `crate::networking`.

use serde_json::{Value, json};

use berth_store::Store;
use berth_store::networks::NetworkRecord;

use crate::UsageError;
use crate::output::print_table;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Create a bridge network
    Create(CreateArgs),
    /// Show networks as JSON (Docker's shape)
    Inspect {
        /// Networks, by name or ID
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks (refused while a container runs on one)
    #[command(visible_alias = "remove")]
    Rm {
        /// Networks, by name or ID
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every user network no container runs on
    Prune {
        /// Do not ask for confirmation (berth never asks)
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Subnet in CIDR form (default: the first free 10.89.N.0/24)
    #[arg(long, value_parser = berth_store::networks::parse_cidr)]
    subnet: Option<(std::net::Ipv4Addr, u8)>,
    /// Gateway address (default: the subnet's first)
    #[arg(long)]
    gateway: Option<std::net::Ipv4Addr>,
    /// No route out of the network
    #[arg(long)]
    internal: bool,
    /// Driver: only `bridge`
    #[arg(short, long, default_value = "bridge", value_parser = ["bridge"])]
    driver: String,
    /// Set a label (KEY=VALUE)
    #[arg(long = "label")]
    labels: Vec<String>,
    /// The network's name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)
    name: String,
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

pub fn run(store: &Store, command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Ls(args) => ls(store, args),
        Command::Create(args) => create(store, args),
        Command::Inspect { names } => inspect(store, &names),
        Command::Rm { names } => rm(store, &names),
        Command::Prune { .. } => prune(store),
    }
}

/// The built-in networks without a bridge: (name, driver). Their IDs are the digest of
/// their names, so they are the same on every machine (`bridge`'s too).
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

fn bridge_row(n: &NetworkRecord) -> Value {
    json!({
        "CreatedAt": n.created,
        "Driver": "bridge",
        "ID": n.id,
        "IPv6": "false",
        "Internal": n.internal.to_string(),
        "Labels": n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        "Name": n.name,
        "Scope": "local",
    })
}

fn create(store: &Store, args: CreateArgs) -> anyhow::Result<u8> {
    let mut labels = std::collections::BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_owned(), v.to_owned());
    }
    let net = store
        .create_network(
            &args.name,
            args.subnet,
            args.gateway,
            args.internal,
            labels,
            crate::output::now_rfc3339(),
        )
        .map_err(|e| UsageError(e.to_string()))?;
    outln!("{}", net.id);
    Ok(0)
}

fn inspect(store: &Store, names: &[String]) -> anyhow::Result<u8> {
    let live = crate::networking::cleanup_stale(store)?;
    let records = store.container_records()?;
    let mut out = Vec::new();
    let mut missing = 0;
    for name in names {
        let n = match store.network(name) {
            Ok(n) => n,
            Err(e) => {
                errln!("berth: {e}");
                missing += 1;
                continue;
            }
        };
        let mut containers = serde_json::Map::new();
        for l in live.iter().filter(|l| l.network == n.name) {
            let cname = records
                .iter()
                .find(|r| r.id == l.container)
                .and_then(|r| r.name.clone())
                .unwrap_or_default();
            containers.insert(
                l.container.clone(),
                json!({
                    "Name": cname,
                    "IPv4Address": format!("{}/{}", l.address, n.prefix),
                    "MacAddress": berth_runtime::net::mac_for(l.address),
                    "IPv6Address": "",
                }),
            );
        }
        out.push(json!({
            "Name": n.name,
            "Id": n.id,
            "Created": n.created,
            "Scope": "local",
            "Driver": "bridge",
            "EnableIPv6": false,
            "IPAM": {
                "Driver": "default",
                "Options": {},
                "Config": [{"Subnet": format!("{}/{}", n.subnet, n.prefix), "Gateway": n.gateway.to_string()}],
            },
            "Internal": n.internal,
            "Attachable": false,
            "Containers": containers,
            "Options": {"com.docker.network.bridge.name": n.bridge},
            "Labels": n.labels,
        }));
    }
    outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if missing > 0 { 1 } else { 0 })
}

fn rm(store: &Store, names: &[String]) -> anyhow::Result<u8> {
    let mut failed = 0;
    for name in names {
        let removed = store.network(name).and_then(|n| {
            store
                .remove_network(&n.name, &mut crate::networking::remove_stale)
                .map(|()| n)
        });
        match removed {
            Ok(n) => {
                berth_runtime::net::remove_network(&n.bridge)?;
                outln!("{name}");
            }
            Err(e) => {
                errln!("berth: {e}");
                failed += 1;
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

fn prune(store: &Store) -> anyhow::Result<u8> {
    let live = crate::networking::cleanup_stale(store)?;
    for n in store.networks()? {
        if n.is_default() || live.iter().any(|l| l.network == n.name) {
            continue;
        }
        if store
            .remove_network(&n.name, &mut crate::networking::remove_stale)
            .is_ok()
        {
            berth_runtime::net::remove_network(&n.bridge)?;
            outln!("{}", n.name);
        }
    }
    Ok(0)
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

fn ls(store: &Store, args: LsArgs) -> anyhow::Result<u8> {
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
    let mut all: Vec<Value> = store.networks()?.iter().map(bridge_row).collect();
    all.extend(NETWORKS.iter().map(|(n, d)| network(n, d)));
    all.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
    let nets: Vec<Value> = all.into_iter().filter(|n| matches(n, &filters)).collect();
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
