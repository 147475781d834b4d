//! The event stream: `GET /v1/events` (Server-Sent Events).
//!
//! Each SSE event's `data` is one [`EventView`] as JSON, on one line:
//!
//! ```text
//! data: {"timestamp":1764028861042,"type":"message","id":{"origin":"demo-1","generation":17,"seq":3},"tag":"DebugMessage","payload":{"text":"hello world"},"hops":1}
//! ```
//!
//! The first event of every stream is `connected` (so a client knows it is subscribed). A
//! client that reads too slowly misses events rather than slowing the daemon down; the next
//! event it gets is then `events-skipped`, with the number it missed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ConflictView, Encoding, MemberView, MessageIdView};

/// One event of the stream: when, and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    /// When the daemon sent the event to this stream (Unix milliseconds, daemon's clock).
    pub timestamp: u64,
    /// The event, with its `type`.
    #[serde(flatten)]
    pub event: EventData,
}

/// What happened; serialized with a `type` field naming the variant in kebab-case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EventData {
    /// `connected`: the first event of every stream; `node` is the answering daemon.
    Connected {
        /// Name of the answering node.
        node: String,
    },
    /// `member-joined`: a member was seen for the first time, or restarted (new generation).
    MemberJoined {
        /// The member after the change.
        member: MemberView,
    },
    /// `member-suspect`: a member missed its probes.
    MemberSuspect {
        /// The member after the change, with the evidence.
        member: MemberView,
    },
    /// `member-alive`: a suspect or failed member refuted the verdict.
    MemberAlive {
        /// The member after the change.
        member: MemberView,
    },
    /// `member-failed`: a suspicion was not refuted in time.
    MemberFailed {
        /// The member after the change, with the evidence.
        member: MemberView,
    },
    /// `member-left`: a member left gracefully.
    MemberLeft {
        /// The member after the change.
        member: MemberView,
    },
    /// `member-updated`: a live member changed its address or tags.
    MemberUpdated {
        /// The member after the change.
        member: MemberView,
    },
    /// `member-reaped`: a failed or left member was removed from the table.
    MemberReaped {
        /// The member as it was last.
        member: MemberView,
    },
    /// `member-conflict`: two live processes claim the same name.
    MemberConflict {
        /// The claimant that is not in the member table.
        conflict: ConflictView,
    },
    /// `key-changed`: a key of some node's state was set or deleted.
    KeyChanged {
        /// Owner of the key.
        node: String,
        /// The key.
        key: String,
        /// The new value (as in [`KvEntry`](crate::KvEntry)); `null` when the key was deleted.
        value: Option<String>,
        /// `base64` when `value` is the base64 of bytes that are not UTF-8.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encoding: Option<Encoding>,
        /// The owner's version of the write.
        version: u64,
    },
    /// `message`: a user message was delivered to this node.
    Message {
        /// The message's unique id.
        id: MessageIdView,
        /// Its tag.
        tag: String,
        /// The payload: the JSON value itself when the payload is JSON; otherwise a string,
        /// with `encoding` saying which kind (see [`payload_view`]).
        payload: Value,
        /// Absent for a JSON payload; `text` or `base64` otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encoding: Option<PayloadEncoding>,
        /// Hops from the origin (0 on the origin itself).
        hops: u32,
    },
    /// `keyring-changed`: this node's gossip keyring changed (fingerprints only).
    KeyringChanged {
        /// The keyring after the change, primary first.
        keys: Vec<crate::KeyView>,
    },
    /// `key-rotation`: a key operation started on this node ended.
    KeyRotation {
        /// Its outcome across the cluster.
        report: crate::KeyOperationResponse,
    },
    /// `events-skipped`: this client read too slowly and missed events.
    EventsSkipped {
        /// How many events it missed.
        skipped: u64,
    },
    /// An event type this version of the crate does not know (from a newer daemon).
    #[serde(other)]
    Unknown,
}

/// How a message payload that is not JSON appears in a `message` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadEncoding {
    /// UTF-8 text that is not JSON, as a string.
    Text,
    /// Bytes that are not UTF-8, as base64 (standard alphabet, padded).
    Base64,
}

/// A message payload as it appears in a `message` event: the JSON value when the bytes are
/// JSON, else a string (the text, or base64 for bytes that are not UTF-8) and its encoding.
pub fn payload_view(payload: &[u8]) -> (Value, Option<PayloadEncoding>) {
    if let Ok(value) = serde_json::from_slice::<Value>(payload) {
        return (value, None);
    }
    match crate::encode_bytes(payload) {
        (text, None) => (Value::String(text), Some(PayloadEncoding::Text)),
        (base64, Some(_)) => (Value::String(base64), Some(PayloadEncoding::Base64)),
    }
}

impl EventData {
    /// The `type` of the event, as serialized (`member-failed`, `message`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            EventData::Connected { .. } => "connected",
            EventData::MemberJoined { .. } => "member-joined",
            EventData::MemberSuspect { .. } => "member-suspect",
            EventData::MemberAlive { .. } => "member-alive",
            EventData::MemberFailed { .. } => "member-failed",
            EventData::MemberLeft { .. } => "member-left",
            EventData::MemberUpdated { .. } => "member-updated",
            EventData::MemberReaped { .. } => "member-reaped",
            EventData::MemberConflict { .. } => "member-conflict",
            EventData::KeyChanged { .. } => "key-changed",
            EventData::Message { .. } => "message",
            EventData::KeyringChanged { .. } => "keyring-changed",
            EventData::KeyRotation { .. } => "key-rotation",
            EventData::EventsSkipped { .. } => "events-skipped",
            EventData::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(event: EventView) -> Value {
        let json = serde_json::to_string(&event).unwrap();
        assert!(!json.contains('\n'));
        assert_eq!(serde_json::from_str::<EventView>(&json).unwrap(), event);
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn message_events_are_flat_objects_with_a_type() {
        let (payload, encoding) = payload_view(br#"{"text":"hello world"}"#);
        let raw = round_trip(EventView {
            timestamp: 1_700_000_000_000,
            event: EventData::Message {
                id: MessageIdView {
                    origin: "n1".into(),
                    generation: 5,
                    seq: 2,
                },
                tag: "DebugMessage".into(),
                payload,
                encoding,
                hops: 1,
            },
        });
        assert_eq!(raw["type"], "message");
        assert_eq!(raw["timestamp"], 1_700_000_000_000u64);
        assert_eq!(raw["payload"]["text"], "hello world");
        assert_eq!(raw["id"]["origin"], "n1");
        assert!(raw.get("encoding").is_none());
    }

    #[test]
    fn key_changes_carry_value_or_null() {
        let raw = round_trip(EventView {
            timestamp: 1,
            event: EventData::KeyChanged {
                node: "n1".into(),
                key: "role".into(),
                value: None,
                encoding: None,
                version: 9,
            },
        });
        assert_eq!(raw["type"], "key-changed");
        assert!(raw["value"].is_null());
    }

    #[test]
    fn payloads_that_are_not_json_are_strings() {
        assert_eq!(
            payload_view(b"plain words"),
            (
                Value::String("plain words".into()),
                Some(PayloadEncoding::Text)
            )
        );
        assert_eq!(
            payload_view(&[0xff]),
            (Value::String("/w==".into()), Some(PayloadEncoding::Base64))
        );
        assert_eq!(payload_view(b"42"), (Value::from(42), None));
    }

    #[test]
    fn unknown_types_are_tolerated() {
        let event: EventView =
            serde_json::from_str(r#"{"timestamp":3,"type":"from-the-future","x":1}"#).unwrap();
        assert_eq!(event.event, EventData::Unknown);
    }
}
