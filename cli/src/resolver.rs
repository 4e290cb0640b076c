//! `FROM` images for the builder: the store's, else pulled from their registry.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use berth_builder::ResolveError;
use berth_builder::plan::{BaseImage, Resolver};
use berth_oci::{Platform, Reference};
use berth_store::Store;

/// FROM images: the local store, else pulled from their registry (always checked again with
/// `--pull`; each image at most once per build).
pub struct StoreResolver {
    pub store: Arc<Store>,
    pub pull: bool,
    pub quiet: bool,
    pub options: berth_registry_client::Options,
    pub pulled: Mutex<HashSet<String>>,
}

impl Resolver for StoreResolver {
    /// The store's image when it is for `platform` (default: the host's), else a pull of
    /// that platform (as BuildKit, which never builds on an image of another platform than
    /// the one asked for).
    fn resolve(&self, name: &str, platform: Option<&str>) -> Result<BaseImage, ResolveError> {
        let wanted = match platform {
            Some(p) => p
                .parse::<Platform>()
                .map_err(|e| ResolveError::Invalid(e.to_string()))?,
            None => Platform::host(),
        };
        let found = |image: berth_store::Image| BaseImage {
            manifest: image.manifest.digest.clone(),
            id: image.id().clone(),
            config: image.config,
        };
        let platform_of = |image: &berth_store::Image| {
            let c = &image.config;
            Platform::new(&c.os, &c.architecture, c.variant.as_deref())
        };
        // Configs without a platform (some old images) fit any.
        let fits = |image: &berth_store::Image| {
            image.config.architecture.is_empty() || wanted.matches(&platform_of(image))
        };
        let pulled_key = format!("{name} {wanted}");
        let done = self.pulled.lock().expect("no panics").contains(&pulled_key);
        let mut other_platform = None;
        if !self.pull || done {
            match self.store.resolve_for(name, &wanted) {
                Ok(image) if fits(&image) => return Ok(found(image)),
                Ok(image) => other_platform = Some(platform_of(&image)),
                Err(berth_store::StoreError::NoSuchImage(_)) if !done => {}
                Err(e) => return Err(e.into()),
            }
        }
        let failed = |e: String| match &other_platform {
            Some(have) => ResolveError::StorePlatform {
                have: have.to_string(),
                wanted: wanted.to_string(),
                pull: e,
            },
            None => ResolveError::Pull(e),
        };
        let reference = Reference::parse(name).map_err(|e| failed(e.to_string()))?;
        if !self.quiet {
            errln!("pulling {} ({wanted}) for FROM", reference.familiar());
        }
        crate::block_on(crate::transfer::pull_image(
            self.store.clone(),
            &reference,
            &self.options,
            Some(wanted.clone()),
            self.quiet,
        ))
        .map_err(|e| failed(format!("{e:#}")))?;
        self.pulled.lock().expect("no panics").insert(pulled_key);
        let image = self.store.resolve_for(&reference.to_string(), &wanted)?;
        if !fits(&image) {
            return Err(ResolveError::PulledPlatform {
                have: platform_of(&image).to_string(),
                wanted: wanted.to_string(),
            });
        }
        Ok(found(image))
    }
}
