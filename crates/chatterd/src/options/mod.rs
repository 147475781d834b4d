//! Options: what the operator asks for, from the command line ([`flags`]) and the config file
//! ([`config`]), each value checked as it is parsed and the rules spanning several checked by
//! [`flags::Args::validate`], all before anything starts. The specifications of checks, event
//! hooks and services are here too, since the flags hold them; running them is the
//! subsystems' part.
//!
//! An option module imports the foundations only, and the modules of this layer below it:
//! `values` ← `checks`, `hooks`, `services`, `discover`, `encryption` ← `flags` ← `config`
//! (a test, `tests/layers.rs`, keeps it so).

pub mod checks;
pub mod config;
pub mod discover;
pub mod encryption;
pub mod flags;
pub mod hooks;
pub mod services;
pub mod values;
