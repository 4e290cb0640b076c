//! `berth rmi IMAGE...`: remove names, and images left without one (Docker's rules: a name
//! removes that name; an ID removes the image, which needs `-f` when several names or a
//! container use it). Space is reclaimed at once when no other berth process is running,
//! else by the next `berth system prune`.

use berth_store::{Store, StoreError};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove even when several names or a container use the image
    #[arg(short, long)]
    force: bool,
    /// Images by name or ID (a name only removes that name while others are left)
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let mut failed = false;
    for name in &args.images {
        if let Err(e) = remove(store, name, args.force) {
            errln!(
                "Error: {}",
                crate::output::terminal_safe_text(&format!("{e:#}"))
            );
            failed = true;
        }
    }
    match store.try_gc()? {
        Some(_) => {}
        None => errln!(
            "note: another berth process is using the store; run `berth system prune` later to reclaim space"
        ),
    }
    Ok(if failed { 1 } else { 0 })
}

fn remove(store: &Store, name: &str, force: bool) -> anyhow::Result<()> {
    let image = store.resolve(name)?;
    let by_name = berth_oci::Reference::parse(name)
        .ok()
        .filter(|r| image.tags.contains(r));
    let users: Vec<_> = store
        .container_records()?
        .into_iter()
        .filter(|c| c.image == image.root.digest)
        .collect();
    let untag: Vec<berth_oci::Reference> = match &by_name {
        Some(r) if image.tags.len() > 1 => vec![r.clone()],
        _ => {
            if !force {
                if let Some(c) = users.first() {
                    return Err(StoreError::InUse {
                        image: name.to_owned(),
                        container: c.name.clone().unwrap_or(c.id.clone()),
                    }
                    .into());
                }
                if by_name.is_none() && image.tags.len() > 1 {
                    return Err(crate::UsageError(format!(
                        "unable to delete {} (must be forced): image is referenced by {} names",
                        image.id().short(),
                        image.tags.len()
                    ))
                    .into());
                }
            }
            image.tags.clone()
        }
    };
    for r in &untag {
        store.remove_tag(r)?;
        outln!("Untagged: {}", r.familiar());
    }
    if untag.len() == image.tags.len() {
        store.remove_root(&image.root)?;
        outln!("Deleted: {}", image.id());
    }
    Ok(())
}
