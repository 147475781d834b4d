//! Options: what the operator asks for, from the command line ([`flags`]) and the config file
//! ([`config`]), each value checked as it is parsed and the rules spanning several checked by
//! [`flags::Args::validate`], all before anything starts. The specifications of checks, event
//! hooks and services are here too, since the flags hold them; running them is the
//! subsystems' part.
//!
//! An option module imports the foundations only, besides modules of this layer: `checks`
//! builds on `values`; `flags` on `values`, `checks`, `hooks`, `services`, `discover` and
//! `encryption`; `config` on `flags` and the rest (a test, `tests/layers.rs`, keeps it so,
//! and the modules free of cycles).

pub mod checks;
pub mod config;
pub mod discover;
pub mod encryption;
pub mod flags;
pub mod hooks;
pub mod services;
pub mod values;
