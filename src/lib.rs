//! pymap: a self-hosted appliance that migrates IMAP mailboxes in batches.
//!
//! `main.rs` parses the command line and calls [`cli::dispatch`]; tests use [`router`]
//! and [`run`] to start the server in-process.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod healthcheck;
pub mod keys;
pub mod notify;
pub mod service;
pub mod shared_store;
pub mod state;
pub mod telemetry;
pub mod web;
pub mod worker;

pub use app::{build_state, router, run, serve};
