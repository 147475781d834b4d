//! The HTTP API: one module per resource, the state and error type they share
//! ([`shared`]), the routes ([`router`]), and what stands before every handler: the Host
//! check and the JSON rule ([`origin`]), the token ([`auth`]) and the server's own accept
//! loop with its bounds ([`server`]).
//!
//! An API module imports the foundations, the options and the subsystems, and of this layer
//! `shared`: no endpoint imports another, only `router` brings them together, and nothing
//! below imports the API (a test, `tests/layers.rs`, keeps it so, and the modules free of
//! cycles).

pub mod auth;
pub mod checks;
pub mod dashboard;
pub mod events;
pub mod health;
pub mod keys;
pub mod kv;
pub mod members;
pub mod messages;
pub mod metrics;
pub mod origin;
pub mod router;
pub mod server;
pub mod services;
pub mod shared;
pub mod system;
