//! The imapsync engine: reading its output and classifying how a run ended.

pub mod exit;
pub mod parse;

#[cfg(test)]
mod fixture_tests;
