//! Typed user messages: [`Tagged`] names a Rust type on the wire, [`DeliveredExt`] turns a
//! delivered message back into one.
//!
//! A user message is a tag and a payload. The payload is JSON everywhere: the library encodes a
//! [`Tagged`] value with `serde_json`, and `chatter-inject` sends the JSON it is given (the
//! top-level key of `{"DebugMessage":{"text":"hi"}}` is the tag, its value the payload). So a
//! message injected by hand decodes into the Rust type of its tag, and a message broadcast by a
//! program reads as plain JSON in the daemon's event stream.

use chatter_core::Delivered;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A Rust type that travels as a user message: its JSON encoding is the payload, [`TAG`]
/// names it on the wire.
///
/// Receivers tell messages apart by their tag, so give each type its own (at most
/// `Config::max_tag_len` bytes, 64 by default). The tag is the top-level key `chatter-inject`
/// expects, so a type name is a good choice.
///
/// ```
/// use chatter::Tagged;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Deploy {
///     service: String,
///     version: u32,
/// }
///
/// impl Tagged for Deploy {
///     const TAG: &'static str = "Deploy";
/// }
/// ```
///
/// [`TAG`]: Tagged::TAG
pub trait Tagged: Serialize + DeserializeOwned {
    /// The message's tag: 1 to `Config::max_tag_len` bytes.
    const TAG: &'static str;
}

/// A delivered message that cannot be read as the type asked for.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The message carries another tag: it is another kind of message.
    #[error("message tagged {found:?}, expected {expected:?}")]
    WrongTag {
        /// The tag of the type asked for.
        expected: &'static str,
        /// The tag the message carries.
        found: String,
    },
    /// The tag matches but the payload is not JSON of the type (a sender with another version
    /// of the type, or a hand-written message with a mistake).
    #[error("payload of a {tag:?} message does not decode: {source}")]
    Json {
        /// The tag of the message.
        tag: &'static str,
        /// What `serde_json` said.
        #[source]
        source: serde_json::Error,
    },
}

/// Reading a delivered user message ([`Event::Message`](crate::Event::Message)) as a
/// [`Tagged`] type.
///
/// ```
/// use chatter::{Delivered, DeliveredExt, Event, Tagged};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Deploy {
///     service: String,
///     version: u32,
/// }
/// impl Tagged for Deploy {
///     const TAG: &'static str = "Deploy";
/// }
///
/// fn on_event(event: &Event) {
///     let Event::Message(message) = event else { return };
///     match message.tag() {
///         Deploy::TAG => match message.decode::<Deploy>() {
///             Ok(deploy) => println!("deploy {} v{}", deploy.service, deploy.version),
///             Err(error) => eprintln!("bad deploy message from {}: {error}", message.id.origin),
///         },
///         other => println!("{other}: {}", String::from_utf8_lossy(&message.payload)),
///     }
/// }
/// ```
pub trait DeliveredExt {
    /// The message's tag.
    fn tag(&self) -> &str;

    /// Whether the message carries the tag of `T` (its payload may still fail to decode).
    fn is<T: Tagged>(&self) -> bool;

    /// Decodes the payload as `T`: [`DecodeError::WrongTag`] if the message carries another
    /// tag, [`DecodeError::Json`] if the payload is not JSON of `T`.
    fn decode<T: Tagged>(&self) -> Result<T, DecodeError>;
}

impl DeliveredExt for Delivered {
    fn tag(&self) -> &str {
        &self.tag
    }

    fn is<T: Tagged>(&self) -> bool {
        self.tag == T::TAG
    }

    fn decode<T: Tagged>(&self) -> Result<T, DecodeError> {
        if !self.is::<T>() {
            return Err(DecodeError::WrongTag {
                expected: T::TAG,
                found: self.tag.clone(),
            });
        }
        serde_json::from_slice(&self.payload).map_err(|source| DecodeError::Json {
            tag: T::TAG,
            source,
        })
    }
}

/// Encodes `value` as the payload of a message tagged `T::TAG`.
pub(crate) fn encode<T: Tagged>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatter_core::MessageId;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ping {
        n: u32,
    }
    impl Tagged for Ping {
        const TAG: &'static str = "Ping";
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Pong {
        n: u32,
    }
    impl Tagged for Pong {
        const TAG: &'static str = "Pong";
    }

    fn delivered(tag: &str, payload: &[u8]) -> Delivered {
        Delivered {
            id: MessageId {
                origin: "a".into(),
                generation: 1,
                seq: 1,
            },
            tag: tag.into(),
            payload: payload.to_vec(),
            hops: 0,
        }
    }

    #[test]
    fn decodes_its_own_encoding() {
        let payload = encode(&Ping { n: 7 }).unwrap();
        let message = delivered(Ping::TAG, &payload);
        assert!(message.is::<Ping>());
        assert_eq!(message.decode::<Ping>().unwrap(), Ping { n: 7 });
    }

    #[test]
    fn decodes_hand_written_json() {
        let message = delivered("Ping", br#" { "n" : 3 } "#);
        assert_eq!(message.decode::<Ping>().unwrap(), Ping { n: 3 });
    }

    #[test]
    fn other_tag_is_wrong_tag() {
        let message = delivered("Ping", br#"{"n":3}"#);
        assert!(!message.is::<Pong>());
        match message.decode::<Pong>() {
            Err(DecodeError::WrongTag { expected, found }) => {
                assert_eq!((expected, found.as_str()), ("Pong", "Ping"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_payload_is_json_error() {
        let message = delivered("Ping", b"not json");
        assert!(matches!(
            message.decode::<Ping>(),
            Err(DecodeError::Json { tag: "Ping", .. })
        ));
    }
}
