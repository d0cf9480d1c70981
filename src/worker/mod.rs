//! Background work: the job queue (in the database), the worker pool, engines and live
//! events. Nothing here imports `web` or `api`.

pub mod engine;
pub mod events;
pub mod imapsync;
pub mod native;
pub mod observer;
pub mod pool;
pub mod queue;
pub mod run_dir;
pub mod status;
