//! One file per command: clap arguments → one library call → printed result.

pub mod build;
pub mod change;
pub mod copy;
pub mod debug;
pub mod history;
pub mod images;
pub mod import;
pub mod inspect;
pub mod lifecycle;
pub mod load;
pub mod ps;
pub mod registry;
pub mod rm;
pub mod rmi;
pub mod run;
pub mod save;
pub mod system;
pub mod tag;

use berth_oci::Reference;

use crate::UsageError;

/// Parses a reference given on the command line (a bad one is a usage error, exit 2).
pub fn parse_reference(s: &str) -> anyhow::Result<Reference> {
    Reference::parse(s).map_err(|e| anyhow::Error::new(UsageError(e.to_string())))
}
