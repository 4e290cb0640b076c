//! Making and starting containers, for `run`, `create`, `start`, `restart` and the
//! `__monitor`: the flags ([`args`]), a new container ([`create`]: its record and what it
//! keeps for every start), its bundle ([`bundle`], made at each start), the start in the
//! foreground or under a monitor with the restart policy and the health check
//! ([`start`]), and a container in `docker inspect`'s shape ([`inspect`]).

pub mod args;
pub mod bundle;
pub mod create;
pub mod inspect;
pub mod start;

pub use args::{RestartPolicy, RunArgs};
pub use create::{Created, create};
pub use start::{launch, monitor};
