//! `pull`, `push`, `login`, `logout`, `tags`: the commands that talk to registries (the
//! copies themselves are [`crate::transfer`]'s).
//!
//! Registries: credentials from `config.json`/`auth.json`/credential helpers; CA certificates
//! from `/etc/docker/certs.d/<host>/` and `/etc/containers/certs.d/<host>/` (and the
//! directories in `BERTH_CERTS_DIR`, colon-separated, first); plain HTTP only for insecure
//! registries (`--tls-verify=false`, `BERTH_INSECURE_REGISTRIES`, and loopback registries that
//! do not answer HTTPS); mirrors for Docker Hub from `BERTH_REGISTRY_MIRRORS`.
//!
//! Progress ([`crate::transfer`]): on a terminal a bar per blob with bytes and rate; else a
//! line per blob as it starts and ends (`<short digest>: Copying (size)`, `Done`, `Already
//! exists`); then the manifest digest, as `docker pull` prints.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;

use berth_oci::Reference;
use berth_registry_client::{Credentials, Registry, creds};
use berth_store::Store;

use crate::UsageError;
use crate::transfer::{pull_image, push_image, remote};
use crate::wiring::{TlsArgs, options};

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// Platform to pick from a multi-platform image (os/arch[/variant]; default the host's)
    #[arg(long)]
    platform: Option<String>,
    /// Print only the image name when done
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    tls: TlsArgs,
    /// The image to pull: NAME[:TAG] or NAME@DIGEST (a name without a registry is Docker Hub's)
    image: String,
}

pub fn pull(store: Arc<Store>, args: PullArgs) -> anyhow::Result<u8> {
    let reference = Reference::parse(&args.image)?;
    let platform = args
        .platform
        .as_deref()
        .map(str::parse::<berth_oci::Platform>)
        .transpose()?;
    let options = options(&args.tls);
    if !args.quiet {
        errln!(
            "{}: Pulling from {}",
            reference.tag().unwrap_or("latest"),
            reference.familiar_repository()
        );
    }
    let digest = crate::block_on(pull_image(
        store, &reference, &options, platform, args.quiet,
    ))?;
    if args.quiet {
        outln!("{}", reference.familiar());
    } else {
        outln!("Digest: {digest}");
        outln!("Status: Downloaded {}", reference.familiar());
        outln!("{reference}");
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// Layer compression for layers kept uncompressed locally: gzip, zstd or none
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd", "none"])]
    compression: String,
    /// Write the pushed manifest digest to this file
    #[arg(long)]
    digestfile: Option<PathBuf>,
    /// No progress: only the line with the pushed digest
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    tls: TlsArgs,
    /// The image in the store
    image: String,
    /// Where to push it (default: the image's own name)
    dest: Option<String>,
}

pub fn push(store: Arc<Store>, args: PushArgs) -> anyhow::Result<u8> {
    let image = store.resolve(&args.image)?;
    let dest = Reference::parse(args.dest.as_deref().unwrap_or(&args.image))?;
    let options = options(&args.tls);
    if !args.quiet {
        errln!("The push refers to repository [{}]", dest.repository());
    }
    let digest = crate::block_on(push_image(
        store.clone(),
        &image,
        &dest,
        &options,
        &args.compression,
        args.quiet,
    ))?;
    if let Some(p) = &args.digestfile {
        crate::output_file::write_bytes(
            p,
            digest.to_string().as_bytes(),
            crate::output_file::PUBLIC_MODE,
        )
        .map_err(|e| e.context(format!("writing --digestfile {}", p.display())))?;
    }
    outln!("{}: digest: {digest}", dest.tag().unwrap_or("latest"));
    Ok(0)
}

/// `https://host/v1/` → `host`; no argument → Docker Hub.
fn registry_name(arg: Option<&str>) -> String {
    match creds::normalize_key(arg.unwrap_or("docker.io")) {
        h if h.is_empty() => "docker.io".into(),
        h => h,
    }
}

#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// The user name (asked for on a terminal when not given)
    #[arg(short, long)]
    username: Option<String>,
    /// The password (visible in the process list: prefer --password-stdin)
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from stdin
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    tls: TlsArgs,
    /// The registry (default: Docker Hub)
    registry: Option<String>,
}

fn prompt(label: &str, hidden: bool) -> anyhow::Result<String> {
    err!("{label}: ");
    let stdin = std::io::stdin();
    let restore = if hidden && stdin.is_terminal() {
        let old = rustix::termios::tcgetattr(&stdin)?;
        let mut quiet = old.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet)?;
        Some(old)
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    if let Some(old) = restore {
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &old)?;
        errln!();
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

pub fn login(args: LoginArgs) -> anyhow::Result<u8> {
    let name = registry_name(args.registry.as_deref());
    let username = match args.username {
        Some(u) => u,
        None if args.password_stdin => {
            return Err(UsageError("--password-stdin needs --username".into()).into());
        }
        None => prompt("Username", false)?,
    };
    let password = match (args.password, args.password_stdin) {
        (Some(_), true) => {
            return Err(UsageError("--password and --password-stdin are exclusive".into()).into());
        }
        (Some(p), false) => {
            errln!(
                "WARNING! Using --password on the command line is insecure: use --password-stdin."
            );
            p
        }
        (None, true) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => prompt("Password", true)?,
    };
    if username.is_empty() || password.is_empty() {
        return Err(UsageError("a user name and a password are needed".into()).into());
    }
    let creds = Credentials {
        username,
        secret: password,
    };
    let options = options(&args.tls);
    // Verified against the registry before anything is saved.
    crate::block_on(async {
        let registry = Registry::connect(&name, &options, Some(creds.clone())).await?;
        registry.ping().await
    })?;
    let place = creds::store(&name, &creds)?;
    errln!("Credentials saved in {place}");
    outln!("Login Succeeded");
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    /// The registry whose saved credentials are removed (default: Docker Hub)
    registry: Option<String>,
}

pub fn logout(args: LogoutArgs) -> anyhow::Result<u8> {
    let name = registry_name(args.registry.as_deref());
    if creds::erase(&name)? {
        outln!("Removing login credentials for {name}");
    } else {
        outln!("Not logged in to {name}");
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct TagsArgs {
    #[command(flatten)]
    tls: TlsArgs,
    /// Output format: `table` (a tag a line, the default), `json`, or a Go template
    ///
    /// `json` prints one JSON object per tag; `TEMPLATE` renders a Go template for each (a
    /// line each); `table TEMPLATE` renders it under a header of the fields' column names,
    /// aligned at tabs (`\t`). Fields: .Repository .Tag. Functions and blocks as
    /// `berth images --help` lists. A field that does not exist is an error.
    ///
    /// Example: `--format '{{.Repository}}:{{.Tag}}'`.
    #[arg(long, default_value = "table", verbatim_doc_comment)]
    format: String,
    /// A repository (`registry/name`)
    repository: String,
}

pub fn tags(args: TagsArgs) -> anyhow::Result<u8> {
    use crate::template::Format;
    let format = Format::parse(&args.format).map_err(|e| crate::UsageError(e.to_string()))?;
    let reference = Reference::parse(&args.repository)?;
    let options = options(&args.tls);
    let tags = crate::block_on(async {
        let r = remote(&reference, &options).await?;
        anyhow::Ok(r.tags().await?)
    })?;
    let repository = reference.familiar_repository();
    let rows: Vec<serde_json::Value> = tags
        .iter()
        .map(|t| serde_json::json!({ "Repository": repository, "Tag": t }))
        .collect();
    match format {
        // A registry's tags are its text: shown escaped.
        Format::Table => {
            for t in &tags {
                outln!("{}", crate::output::terminal_safe(t));
            }
        }
        Format::Json => {
            for row in &rows {
                outln!("{}", crate::output::json_terminal_safe(&row.to_string()));
            }
        }
        Format::Template { template, table } => {
            let headers = serde_json::json!({ "Repository": "REPOSITORY", "Tag": "TAG" });
            crate::template::print_rows(&template, table, (&headers, None), &rows, &[])
                .map_err(|e| crate::UsageError(e.to_string()))?;
        }
    }
    Ok(0)
}
