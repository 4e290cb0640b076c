//! `FROM` images for the builder: the store's, else pulled from their registry; for a build
//! whose image only goes to a registry, read there without their layers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use berth_builder::ResolveError;
use berth_builder::cache::{CacheConfig, Imported};
use berth_builder::plan::{BaseImage, RemoteLayers, Resolver};
use berth_oci::transport::{platform_manifest, read_config};
use berth_oci::{ImageConfig, ManifestValue, Platform, Reference};
use berth_store::Store;

/// FROM images: the local store, else pulled from their registry (always checked again with
/// `--pull`; each image at most once per build).
pub struct StoreResolver {
    pub store: Arc<Store>,
    pub pull: bool,
    pub quiet: bool,
    pub options: berth_registry_client::Options,
    pub pulled: Mutex<HashSet<String>>,
    /// A `FROM` image that is not in the store is read from its registry without its layers
    /// ([`BaseImage::remote`]): the build fetches a layer only when a step must see the tree.
    pub lazy: bool,
    /// The images read that way, by name and platform, with the repository each came from.
    pub remote: Mutex<HashMap<String, (BaseImage, Reference)>>,
}

impl StoreResolver {
    pub fn new(
        store: Arc<Store>,
        pull: bool,
        quiet: bool,
        options: berth_registry_client::Options,
        lazy: bool,
    ) -> StoreResolver {
        StoreResolver {
            store,
            pull,
            quiet,
            options,
            pulled: Mutex::new(HashSet::new()),
            lazy,
            remote: Mutex::new(HashMap::new()),
        }
    }

    /// The `FROM` images left in their registries, as caches with no records, with the
    /// repository each is in (a push to the same registry mounts their layers from there).
    pub fn left_in_registry(&self) -> Vec<(Arc<Imported>, Reference)> {
        self.remote
            .lock()
            .expect("no panics")
            .values()
            .filter_map(|(b, r)| Some((b.remote.as_ref()?.from.clone(), r.clone())))
            .collect()
    }
}

fn wanted_platform(platform: Option<&str>) -> Result<Platform, ResolveError> {
    match platform {
        Some(p) => p
            .parse::<Platform>()
            .map_err(|e| ResolveError::Invalid(e.to_string())),
        None => Ok(Platform::host()),
    }
}

fn platform_of(config: &ImageConfig) -> Platform {
    Platform::new(&config.os, &config.architecture, config.variant.as_deref())
}

/// Configs without a platform (some old images) fit any.
fn fits(config: &ImageConfig, wanted: &Platform) -> bool {
    config.architecture.is_empty() || wanted.matches(&platform_of(config))
}

fn found(image: berth_store::Image) -> BaseImage {
    BaseImage {
        manifest: image.manifest.digest.clone(),
        id: image.id().clone(),
        config: image.config,
        remote: None,
    }
}

impl Resolver for StoreResolver {
    /// The store's image when it is for `platform` (default: the host's), else a pull of
    /// that platform (as BuildKit, which never builds on an image of another platform than
    /// the one asked for).
    fn resolve(&self, name: &str, platform: Option<&str>) -> Result<BaseImage, ResolveError> {
        let wanted = wanted_platform(platform)?;
        let pulled_key = format!("{name} {wanted}");
        let done = self.pulled.lock().expect("no panics").contains(&pulled_key);
        let mut other_platform = None;
        if !self.pull || done {
            match self.store.resolve_for(name, &wanted) {
                Ok(image) if fits(&image.config, &wanted) => return Ok(found(image)),
                Ok(image) => other_platform = Some(platform_of(&image.config)),
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
        if !fits(&image.config, &wanted) {
            return Err(ResolveError::PulledPlatform {
                have: platform_of(&image.config).to_string(),
                wanted: wanted.to_string(),
            });
        }
        Ok(found(image))
    }

    /// With [`StoreResolver::lazy`], an image the store does not have (or every image, with
    /// `--pull`) is read from its registry: its manifest and config only.
    fn resolve_base(&self, name: &str, platform: Option<&str>) -> Result<BaseImage, ResolveError> {
        if !self.lazy {
            return self.resolve(name, platform);
        }
        let wanted = wanted_platform(platform)?;
        let key = format!("{name} {wanted}");
        if let Some((base, _)) = self.remote.lock().expect("no panics").get(&key) {
            return Ok(base.clone());
        }
        if !self.pull
            && let Ok(image) = self.store.resolve_for(name, &wanted)
            && fits(&image.config, &wanted)
        {
            return Ok(found(image));
        }
        let reference = Reference::parse(name).map_err(|e| ResolveError::Pull(e.to_string()))?;
        if !self.quiet {
            errln!("reading {} ({wanted}) for FROM", reference.familiar());
        }
        let base = read_remote(&reference, &self.options, &wanted)
            .map_err(|e| ResolveError::Pull(format!("{e:#}")))?;
        if !fits(&base.config, &wanted) {
            return Err(ResolveError::PulledPlatform {
                have: platform_of(&base.config).to_string(),
                wanted: wanted.to_string(),
            });
        }
        self.remote
            .lock()
            .expect("no panics")
            .insert(key, (base.clone(), reference));
        Ok(base)
    }
}

/// An image's manifest and config read from its registry (held to the limits a pull holds
/// them to), its layers left there.
fn read_remote(
    reference: &Reference,
    options: &berth_registry_client::Options,
    wanted: &Platform,
) -> anyhow::Result<BaseImage> {
    let rt = crate::transfer::runtime();
    let (src, manifest, config_bytes) = rt.block_on(async {
        let src = crate::transfer::remote(reference, options).await?;
        let (_, manifest) = platform_manifest(&src, wanted).await?;
        let ManifestValue::Manifest(value) = &manifest.value else {
            anyhow::bail!("{} is an index inside an index", manifest.digest);
        };
        let config = read_config(&src, &value.config).await?;
        anyhow::Ok((src, manifest, config))
    })?;
    let ManifestValue::Manifest(value) = manifest.value else {
        unreachable!("checked above");
    };
    let config = ImageConfig::parse(&config_bytes)?;
    if config.rootfs.diff_ids.len() != value.layers.len() {
        anyhow::bail!(
            "image {}: {} layers but {} diff_ids",
            value.config.digest,
            value.layers.len(),
            config.rootfs.diff_ids.len()
        );
    }
    if let Some(l) = value
        .layers
        .iter()
        .find(|l| !matches!(l.kind(), berth_oci::media_type::Kind::Layer(_)))
    {
        anyhow::bail!(
            "layer {} has media type {:?}, not a layer's",
            l.digest,
            l.media_type
        );
    }
    let from = Arc::new(Imported::new(
        Arc::new(crate::transfer::SyncBlobs { src, rt }),
        CacheConfig::default(),
    ));
    Ok(BaseImage {
        manifest: manifest.digest.clone(),
        id: value.config.digest.clone(),
        config: config.clone(),
        remote: Some(Arc::new(RemoteLayers {
            layers: value.layers,
            config,
            from,
        })),
    })
}
