//! User messages: `POST /v1/messages`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Body of `POST /v1/messages`: `{"tag": "Deploy", "payload": {"service": "web"}}`.
///
/// The payload is any JSON value; the daemon broadcasts its text, compacted (see
/// [`compact_json`]) but otherwise as given, key order included.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BroadcastRequest {
    /// The message's tag (1 to 64 bytes).
    pub tag: String,
    /// The payload, as JSON text.
    pub payload: Box<RawValue>,
}

/// The unique id of a user message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageIdView {
    /// The member that broadcast it (for an injected message: the daemon it was injected into).
    pub origin: String,
    /// The origin's generation when it broadcast it.
    pub generation: u64,
    /// The origin's sequence number of the message.
    pub seq: u64,
}

/// Body of a successful `POST /v1/messages` (202 Accepted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastResponse {
    /// The id of the message broadcast.
    pub id: MessageIdView,
}

/// Valid JSON text without its insignificant whitespace (outside strings), otherwise unchanged:
/// key order and number spelling are kept.
///
/// ```
/// let text = "{\n  \"b\": [1, 2.50],\n  \"a\": \"x y\"\n}";
/// assert_eq!(chatter_api::compact_json(text), r#"{"b":[1,2.50],"a":"x y"}"#);
/// ```
///
/// The input must be valid JSON (parse it first); other text is only stripped of whitespace
/// outside double-quoted strings.
pub fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_strings_and_order() {
        let text = r#" { "z" : "a \" b\\" , "a":[ 1 , { "k" : null } ] } "#;
        let compact = compact_json(text);
        assert_eq!(compact, r#"{"z":"a \" b\\","a":[1,{"k":null}]}"#);
        let before: serde_json::Value = serde_json::from_str(text).unwrap();
        let after: serde_json::Value = serde_json::from_str(&compact).unwrap();
        assert_eq!(before, after);
    }

    #[test]
    fn request_keeps_the_payload_text() {
        let body = r#"{"tag":"Deploy","payload":{"service":"web","version":42}}"#;
        let request: BroadcastRequest = serde_json::from_str(body).unwrap();
        assert_eq!(request.tag, "Deploy");
        assert_eq!(request.payload.get(), r#"{"service":"web","version":42}"#);
    }
}
