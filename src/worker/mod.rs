//! Background work: job statuses, engines and (next) the pool and queue. Nothing here
//! imports `web` or `api`.

pub mod imapsync;
pub mod status;
