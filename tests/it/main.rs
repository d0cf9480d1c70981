//! The one integration-test binary (one link step for the whole suite).
//!
//! Services come from `./scripts/test.sh`, which starts private PostgreSQL and Redis and
//! exports `PYMAP_TEST_DATABASE_URL` / `PYMAP_TEST_REDIS_URL`. Without them the affected
//! cases are skipped with a message, except under `CI=true`, where they fail.

mod harness;

mod api;
mod api_fuzz;
mod api_matrix;
mod api_streams;
mod auth;
mod binary;
mod browser;
mod config;
mod dovecot;
mod events;
mod health;
mod live_actions;
mod login_check;
mod native;
mod pool;
mod pool_writes;
mod runner;
mod standin;
mod storage;
mod submit;
mod web;
mod web_account;
mod web_tasks;
mod web_weight;
