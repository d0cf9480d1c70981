//! The one integration-test binary (one link step for the whole suite).
//!
//! Services come from `./scripts/test.sh`, which starts private PostgreSQL and Redis and
//! exports `PYMAP_TEST_DATABASE_URL` / `PYMAP_TEST_REDIS_URL`. Without them the affected
//! cases are skipped with a message, except under `CI=true`, where they fail.

mod harness;

mod auth;
mod binary;
mod config;
mod events;
mod health;
mod pool;
mod runner;
mod standin;
mod storage;
