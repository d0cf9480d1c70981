//! The imapsync engine: running it, reading its output and classifying how a run ended.

mod argv;
pub mod exit;
pub mod parse;
pub mod runner;

#[cfg(test)]
mod fixture_tests;
