//! `berth tag SOURCE TARGET`: another name for an image.

use berth_store::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image (name, ID or digest)
    source: String,
    /// The new name
    target: String,
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let target = crate::wiring::parse_reference(&args.target)?;
    if target.digest().is_some() {
        return Err(
            crate::UsageError(format!("{}: a tag cannot name a digest", args.target)).into(),
        );
    }
    let image = store.resolve(&args.source)?;
    store.set_tag(&target, &image.root)?;
    Ok(0)
}
