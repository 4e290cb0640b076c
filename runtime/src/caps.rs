//! Capabilities: the spec's sets in, the process's sets out. The bounding set is cut while
//! the process is still root; after `setuid` a root process gets the spec's inheritable,
//! permitted and effective sets, a non-root one keeps none (the kernel clears them, as for
//! Docker's non-root users), and the ambient set is always emptied.

use std::collections::HashSet;

use caps::{CapSet, Capability as Cap};
use oci_spec::runtime::{Capability, LinuxCapabilities};

use crate::RuntimeError;

fn convert(set: &Option<HashSet<Capability>>) -> HashSet<Cap> {
    set.iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok()?.as_str()?.parse::<Cap>().ok())
        .collect()
}

/// The OCI name of every capability this process may grant (`--privileged`): the current
/// bounding set, not every capability the crate knows (capset refuses what the bounding set
/// lacks; this VM's lacks CAP_SYS_RESOURCE).
pub fn all_oci() -> HashSet<Capability> {
    caps::read(None, CapSet::Bounding)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| serde_json::from_value(serde_json::Value::String(c.to_string())).ok())
        .collect()
}

fn err(what: &str) -> impl FnOnce(caps::errors::CapsError) -> RuntimeError + '_ {
    move |e| RuntimeError::Capabilities(format!("{what}: {e}"))
}

/// Drops from the bounding set what the spec does not list (needs CAP_SETPCAP: call as root).
pub fn limit_bounding(spec: &LinuxCapabilities) -> Result<(), RuntimeError> {
    let keep = convert(spec.bounding());
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(err("dropping from the bounding set"))?;
        }
    }
    Ok(())
}

/// Sets the other sets after `setuid`.
pub fn apply_sets(spec: &LinuxCapabilities, uid: u32) -> Result<(), RuntimeError> {
    caps::clear(None, CapSet::Ambient).map_err(err("clearing the ambient set"))?;
    if uid != 0 {
        caps::clear(None, CapSet::Inheritable).map_err(err("clearing the inheritable set"))?;
        return Ok(());
    }
    caps::set(None, CapSet::Inheritable, &convert(spec.inheritable()))
        .map_err(err("setting the inheritable set"))?;
    caps::set(None, CapSet::Effective, &convert(spec.effective()))
        .map_err(err("setting the effective set"))?;
    caps::set(None, CapSet::Permitted, &convert(spec.permitted()))
        .map_err(err("setting the permitted set"))?;
    Ok(())
}
