//! What every request handler and background task shares.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use sea_orm::DatabaseConnection;

use crate::{
    config::Config,
    keys::Keys,
    service::verification::Verifier,
    shared_store::Throttle,
    web::templates::Templates,
    worker::{events::EventBus, pool::Pool},
};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    /// Present when `redis_url` is configured.
    pub redis: Option<ConnectionManager>,
    pub keys: Arc<Keys>,
    pub templates: Arc<Templates>,
    pub throttle: Throttle,
    /// The worker pool (claims jobs; also knows which engines are available).
    pub pool: Pool,
    pub events: EventBus,
    /// Runs the "verify" action of jobs in the background.
    pub verifier: Verifier,
}
