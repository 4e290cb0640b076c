//! `berth inspect NAME...`: a JSON array like `docker inspect`: a container by name or ID
//! (`launch::inspect`), else an image; `--type` picks one.

use berth_store::{Image, Store};
use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Format the output with a Go template (`json`: the default JSON array)
    ///
    /// The template is rendered once per image (a line each) over the JSON object the
    /// default output prints, addressed by its field names: .Id .RepoTags .RepoDigests
    /// .Created .Author .Comment .Architecture .Variant .Os .Size .Config (.Config.Env,
    /// .Config.Cmd, .Config.Labels, ...) .RootFS .History .Descriptor. Functions and blocks
    /// as `berth images --help` lists. A field that does not exist is an error.
    ///
    /// Examples: `-f '{{index .RepoDigests 0}}'`, `-f '{{json .Config.Env}}'`,
    /// `-f '{{range .RepoTags}}{{println .}}{{end}}'`, `-f '{{index .Config.Labels "k"}}'`.
    #[arg(short, long, verbatim_doc_comment)]
    format: Option<String>,
    /// Only look for this kind of object: `container` or `image`
    #[arg(long = "type", value_parser = ["container", "image"])]
    kind: Option<String>,
    /// Containers or images by name or ID
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    use crate::template::Format;
    let format = match args.format.as_deref() {
        None | Some("json") => None,
        Some(f) => match Format::parse(f).map_err(|e| crate::UsageError(e.to_string()))? {
            Format::Template {
                template,
                table: false,
            } => Some(template),
            _ => {
                return Err(crate::UsageError(format!(
                    "inspect takes a template or json, not {f:?}"
                ))
                .into());
            }
        },
    };
    let mut out = Vec::new();
    // Which of `out` are images, whose absent fields a template sees as zero values.
    let mut images = Vec::new();
    let kind = args.kind.as_deref();
    for name in &args.images {
        if kind != Some("image")
            && let Ok(r) = crate::containers::find(store, name)
        {
            out.push(crate::launch::inspect::describe(store, &r)?);
            images.push(false);
            continue;
        }
        match (kind, store.resolve(name)) {
            (Some("container"), _) => return Err(anyhow::anyhow!("no such container: {name}")),
            (None, Err(berth_store::StoreError::NoSuchImage(_))) => {
                return Err(anyhow::anyhow!("no such object: {name}"));
            }
            (_, image) => {
                out.push(describe(&image?));
                images.push(true);
            }
        }
    }
    if let Some(template) = format {
        for (object, image) in out.iter().zip(images) {
            let text = template
                .render(&if image {
                    with_every_field(object.clone())
                } else {
                    object.clone()
                })
                .map_err(|e| crate::UsageError(e.to_string()))?;
            outln!("{text}");
        }
        return Ok(0);
    }
    // Configs are the image's text: shown without the control characters serde leaves.
    outln!(
        "{}",
        crate::output::json_terminal_safe(&serde_json::to_string_pretty(&out)?)
    );
    Ok(0)
}

/// `image` with every field Docker's image inspect struct has, the absent ones as their
/// zero values: a template sees Docker's struct, where `{{.Config.User}}` of an image
/// without a user is empty, not an error (the JSON output leaves them out, as OCI configs do).
fn with_every_field(mut image: Value) -> Value {
    let fill = |obj: &mut serde_json::Map<String, Value>, fields: &[(&str, Value)]| {
        for (k, zero) in fields {
            obj.entry(k.to_string()).or_insert_with(|| zero.clone());
        }
    };
    let s = || Value::String(String::new());
    let f = || Value::Bool(false);
    if let Some(top) = image.as_object_mut() {
        let size = top.get("Size").cloned().unwrap_or(Value::from(0));
        fill(
            top,
            &[
                ("Parent", s()),
                ("Comment", s()),
                ("Container", s()),
                ("DockerVersion", s()),
                ("Author", s()),
                ("Variant", s()),
                ("OsVersion", s()),
                ("VirtualSize", size),
                ("RepoTags", Value::Array(Vec::new())),
                ("RepoDigests", Value::Array(Vec::new())),
                ("Config", Value::Object(Default::default())),
            ],
        );
        if let Some(Value::Object(config)) = top.get_mut("Config") {
            fill(
                config,
                &[
                    ("Hostname", s()),
                    ("Domainname", s()),
                    ("User", s()),
                    ("AttachStdin", f()),
                    ("AttachStdout", f()),
                    ("AttachStderr", f()),
                    ("ExposedPorts", Value::Null),
                    ("Tty", f()),
                    ("OpenStdin", f()),
                    ("StdinOnce", f()),
                    ("Env", Value::Null),
                    ("Cmd", Value::Null),
                    ("Healthcheck", Value::Null),
                    ("ArgsEscaped", f()),
                    ("Image", s()),
                    ("Volumes", Value::Null),
                    ("WorkingDir", s()),
                    ("Entrypoint", Value::Null),
                    ("NetworkDisabled", f()),
                    ("MacAddress", s()),
                    ("OnBuild", Value::Null),
                    ("Labels", Value::Null),
                    ("StopSignal", s()),
                    ("StopTimeout", Value::Null),
                    ("Shell", Value::Null),
                ],
            );
        }
    }
    image
}

/// The `docker image inspect` shape, with `Descriptor` naming the manifest as newer Docker does.
pub fn describe(image: &Image) -> Value {
    let cfg = &image.config;
    let repo_tags: Vec<String> = image
        .tags
        .iter()
        .filter(|t| t.tag().is_some())
        .map(|t| t.familiar())
        .collect();
    // Each `repository@digest` a registry stores the image as (recorded by pulls and
    // pushes), and the names that pin a digest themselves.
    let mut repo_digests: Vec<String> = Vec::new();
    let pinned = image.tags.iter().filter_map(|t| {
        t.digest()
            .map(|d| format!("{}@{d}", t.familiar_repository()))
    });
    let recorded = image.repo_digests.iter().filter_map(|r| {
        r.digest()
            .map(|d| format!("{}@{d}", r.familiar_repository()))
    });
    for r in recorded.chain(pinned) {
        if !repo_digests.contains(&r) {
            repo_digests.push(r);
        }
    }
    json!({
        "Id": image.id().to_string(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": cfg.history.last().and_then(|h| h.comment.clone()).unwrap_or_default(),
        "Created": cfg.created.clone().unwrap_or_default(),
        "Author": cfg.author.clone().unwrap_or_default(),
        "Config": serde_json::to_value(&cfg.config).unwrap_or(Value::Null),
        "Architecture": cfg.architecture,
        "Variant": cfg.variant,
        "Os": cfg.os,
        "Size": image.size(),
        "RootFS": { "Type": cfg.rootfs.kind, "Layers": cfg.rootfs.diff_ids },
        "History": cfg.history,
        "Metadata": { "LastTagTime": Value::Null },
        "Descriptor": image.root,
    })
}
