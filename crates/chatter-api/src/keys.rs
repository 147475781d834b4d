//! Live key rotation over HTTP: `GET /v1/keys`, `POST /v1/keys/install`, `POST /v1/keys/use`
//! and `POST /v1/keys/remove`. Answers carry fingerprints only, never key material.

use serde::{Deserialize, Serialize};

use crate::KeyView;

/// Body of `POST /v1/keys/install`, `/use` and `/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRequest {
    /// `install`: the key, base64 of 32 bytes (`chatter keygen`). `use` and `remove`: the key
    /// or its fingerprint (16 hex digits); only the fingerprint travels to the other members.
    pub key: String,
}

/// How one node answered a key operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyNodeAnswer {
    /// The node's name.
    pub node: String,
    /// Why it refused; absent when it acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Its keyring after the operation, primary first.
    pub keys: Vec<KeyView>,
}

/// One key across the nodes that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCount {
    /// The key's fingerprint.
    pub fingerprint: String,
    /// Nodes that hold it.
    pub nodes: usize,
    /// Nodes that seal with it.
    pub primary_on: usize,
}

/// The outcome of a key operation across the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyOperationResponse {
    /// `list`, `install`, `use` or `remove`.
    pub operation: String,
    /// The key operated on (absent for `list`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Nodes that acknowledged (the answering daemon included), by name.
    pub acknowledged: Vec<KeyNodeAnswer>,
    /// Nodes that refused, with the reason, by name.
    pub refused: Vec<KeyNodeAnswer>,
    /// Live nodes that did not answer in time.
    pub silent: Vec<String>,
    /// Nodes known but not alive (failed or left): not reached, they need the keyring by hand.
    pub not_reached: Vec<String>,
    /// Every key the answering nodes hold: on how many, and primary on how many.
    pub keys: Vec<KeyCount>,
    /// Whether every live node acknowledged.
    pub complete: bool,
    /// The file the answering daemon rewrites when its keyring changes; absent when its key
    /// came from `CHATTER_GOSSIP_KEY` and changes hold in memory only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring_file: Option<String>,
    /// Something the operator must know (changes held in memory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}
