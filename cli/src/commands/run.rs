//! `berth run IMAGE [COMMAND [ARG...]]`: `create`, then start in the foreground (or, with
//! `-d`, under a monitor); [`crate::launch`] holds both halves. Docker's rules for the
//! command (ENTRYPOINT + CMD, `--entrypoint` resets CMD), the environment (image ENV, then
//! `--env-file`, then `-e`; `PATH` defaulted, `HOSTNAME` set, `TERM=xterm` with `-t`), the
//! image (pulled when the store does not have it, `--pull missing`) and exit codes (the
//! container's own; 125 when berth failed; 126/127 when the command cannot run).

use berth_store::Store;

pub use crate::launch::RunArgs as Args;

pub fn run(store: std::sync::Arc<Store>, args: Args) -> anyhow::Result<u8> {
    let detach = args.detach;
    let (record, created) = crate::launch::create(&store, args)?;
    let id = record.id.clone();
    let code = crate::launch::launch(&store, record, &created, detach)?;
    if detach {
        outln!("{id}");
    }
    Ok(code)
}
