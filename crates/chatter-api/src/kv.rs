//! Key/value state: `GET /v1/kv`, `PUT /v1/kv/{key}`, `DELETE /v1/kv/{key}`.
//!
//! Values are bytes. In JSON a value is a string: the value itself when it is valid UTF-8,
//! else its base64 (standard alphabet, padded) with `"encoding": "base64"` beside it.

use std::fmt;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::Status;

/// How bytes that are not UTF-8 text are written in a JSON string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Base64, standard alphabet with padding (RFC 4648 section 4).
    Base64,
}

/// A base64 string that does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBase64(pub String);

impl fmt::Display for InvalidBase64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid base64 value: {}", self.0)
    }
}

impl std::error::Error for InvalidBase64 {}

/// Bytes as a JSON string: the text itself if they are UTF-8, else base64 and
/// [`Encoding::Base64`].
pub fn encode_bytes(bytes: &[u8]) -> (String, Option<Encoding>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), None),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(bytes),
            Some(Encoding::Base64),
        ),
    }
}

/// The bytes of a JSON string written by [`encode_bytes`].
pub fn decode_bytes(value: &str, encoding: Option<Encoding>) -> Result<Vec<u8>, InvalidBase64> {
    match encoding {
        None => Ok(value.as_bytes().to_vec()),
        Some(Encoding::Base64) => base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|e| InvalidBase64(e.to_string())),
    }
}

/// One key of a node's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value: UTF-8 text as is, other bytes in base64 (then `encoding` is `base64`).
    pub value: String,
    /// Absent for UTF-8 text; `base64` when `value` is the base64 of the bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// The owner's version of the write that set it.
    pub version: u64,
}

impl KvEntry {
    /// The entry of `key` set to `bytes` at `version`.
    pub fn new(key: impl Into<String>, bytes: &[u8], version: u64) -> Self {
        let (value, encoding) = encode_bytes(bytes);
        Self {
            key: key.into(),
            value,
            encoding,
            version,
        }
    }

    /// The value's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, InvalidBase64> {
        decode_bytes(&self.value, self.encoding)
    }
}

/// One node's key/value state as the answering node holds it (an element of the array that
/// `GET /v1/kv` answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStateView {
    /// The member the state belongs to.
    pub node: String,
    /// Its member status as the answering node sees it.
    pub status: Status,
    /// The member's life the state belongs to (a restarted member starts with an empty state).
    pub generation: u64,
    /// The owner's version up to which the answering node holds every write (for the answering
    /// node itself: the version of its last write; 0 before any).
    pub version: u64,
    /// The keys set (deleted keys are not listed), in key order.
    pub entries: Vec<KvEntry>,
}

/// Body of a successful `PUT /v1/kv/{key}` or `DELETE /v1/kv/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvWriteResponse {
    /// The key written.
    pub key: String,
    /// The version of the write (the node's state version after it).
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_stay_text_and_binary_values_become_base64() {
        let text = KvEntry::new("role", b"web", 3);
        let json = serde_json::to_string(&text).unwrap();
        assert_eq!(json, r#"{"key":"role","value":"web","version":3}"#);
        assert_eq!(text.bytes().unwrap(), b"web");

        let binary = KvEntry::new("blob", &[0xff, 0x00, 0x10], 4);
        let json = serde_json::to_string(&binary).unwrap();
        assert_eq!(
            json,
            r#"{"key":"blob","value":"/wAQ","encoding":"base64","version":4}"#
        );
        let back: KvEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(back.bytes().unwrap(), vec![0xff, 0x00, 0x10]);
    }

    #[test]
    fn bad_base64_is_an_error() {
        assert!(decode_bytes("!!", Some(Encoding::Base64)).is_err());
    }
}
