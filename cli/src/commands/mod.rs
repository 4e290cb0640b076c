//! One module per command: clap arguments → one library call → printed result. What two
//! commands share lives in the crate's shared modules (`wiring`, `transfer`, `containers`).

pub mod attach;
pub mod build;
pub mod commit;
pub mod completion;
pub mod copy;
pub mod cp;
pub mod debug;
pub mod diff;
pub mod exec;
pub mod export;
pub mod history;
pub mod images;
pub mod import;
pub mod info;
pub mod inspect;
pub mod lifecycle;
pub mod load;
pub mod network;
pub mod prune;
pub mod ps;
pub mod registry;
pub mod rm;
pub mod rmi;
pub mod run;
pub mod save;
pub mod start;
pub mod system;
pub mod tag;
pub mod top;
pub mod unshare;
pub mod volume;
