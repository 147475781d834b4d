//! What a node accepts from the network: the largest honest value of every counter, and the
//! same size limits on names, tags, keys, values and payloads that local writes obey.
//!
//! Every message passes [`check`] before any state sees it. A message that fails is dropped
//! whole and counted in `Stats::dropped_invalid`; the rest of its datagram is handled. Bounds
//! on counters are what make checked arithmetic enough: a value that passed can be incremented
//! without overflow, so a forged `u64::MAX` can neither wrap a counter nor leave a member
//! unable to refute (see `Node::refute`).

use thiserror::Error;

use crate::config::Config;
use crate::plumtree::MessageId;
use crate::state::WireEntry;
use crate::state_tree::MAX_SUPERSEDES;
use crate::wire::{self, Message};

/// Largest incarnation accepted. Only a member raises its own incarnation, once per refuted
/// suspicion or tag change: at a thousand a second it would take 49 days to get here, so a
/// larger value is forged. A member whose incarnation reaches it begins a new life instead of
/// refuting again.
pub const MAX_INCARNATION: u64 = u32::MAX as u64;

/// Largest generation accepted. Drivers use milliseconds since the Unix epoch (about 2^41 in
/// this century), so 2^62 leaves room for any clock and for every life renewal a member could
/// ever need, while `generation + 1` can never overflow.
pub const MAX_GENERATION: u64 = 1 << 62;

/// Largest key/value version and user-message sequence number accepted: one per write or
/// broadcast of one life, so 2^48 is centuries of a million a second.
pub const MAX_VERSION: u64 = 1 << 48;

/// Most hops a user message may have travelled: more than any tree of `Config::max_members`
/// nodes needs, and far from overflow.
pub const MAX_HOPS: u32 = 1 << 16;

/// Most message ids in one `Graft`; the answer serves at most this many.
pub const MAX_GRAFT_IDS: usize = 64;

/// Why a message was refused. Nothing in the node changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub(crate) enum Invalid {
    /// A member name that is empty or longer than `Config::max_name_len`.
    #[error("member name of {0} bytes")]
    Name(usize),
    /// An incarnation above [`MAX_INCARNATION`].
    #[error("incarnation {0} above the largest honest value")]
    Incarnation(u64),
    /// A generation above [`MAX_GENERATION`].
    #[error("generation {0} above the largest honest value")]
    Generation(u64),
    /// A version, watermark or sequence number above [`MAX_VERSION`], or a delta whose range
    /// runs backwards.
    #[error("version {0} above the largest honest value")]
    Version(u64),
    /// Tags larger than `Config::max_tags_size` encoded.
    #[error("tags of {0} bytes")]
    Tags(usize),
    /// A key longer than `Config::max_key_len`, or a value larger than `Config::max_value_size`.
    #[error("key/value entry over the size limits")]
    Entry,
    /// A user message whose tag or payload is over its limit, or that travelled too many hops.
    #[error("user message over the limits")]
    UserMessage,
    /// Too many items in one message.
    #[error("too many items in one message")]
    TooMany,
}

struct Checker<'a> {
    config: &'a Config,
}

impl Checker<'_> {
    fn name(&self, name: &str) -> Result<(), Invalid> {
        if name.is_empty() || name.len() > self.config.max_name_len {
            return Err(Invalid::Name(name.len()));
        }
        Ok(())
    }

    fn life(&self, generation: u64, incarnation: u64) -> Result<(), Invalid> {
        self.generation(generation)?;
        if incarnation > MAX_INCARNATION {
            return Err(Invalid::Incarnation(incarnation));
        }
        Ok(())
    }

    fn generation(&self, generation: u64) -> Result<(), Invalid> {
        if generation > MAX_GENERATION {
            return Err(Invalid::Generation(generation));
        }
        Ok(())
    }

    fn version(&self, version: u64) -> Result<(), Invalid> {
        if version > MAX_VERSION {
            return Err(Invalid::Version(version));
        }
        Ok(())
    }

    fn tags(&self, tags: &crate::member::Tags) -> Result<(), Invalid> {
        // The encoded size, as `Node::set_tags` measures it (postcard: a varint count, then
        // each string as a varint length and its bytes), without encoding.
        let size = tags
            .iter()
            .map(|(k, v)| varint_len(k.len()) + k.len() + varint_len(v.len()) + v.len())
            .fold(varint_len(tags.len()), usize::saturating_add);
        if size > self.config.max_tags_size {
            return Err(Invalid::Tags(size));
        }
        Ok(())
    }

    fn message_id(&self, id: &MessageId) -> Result<(), Invalid> {
        self.name(&id.origin)?;
        self.generation(id.generation)?;
        self.version(id.seq)
    }

    fn entry(&self, entry: &WireEntry) -> Result<(), Invalid> {
        if entry.key.is_empty()
            || entry.key.len() > self.config.max_key_len
            || entry
                .value
                .as_ref()
                .is_some_and(|v| v.len() > self.config.max_value_size)
        {
            return Err(Invalid::Entry);
        }
        self.version(entry.version)
    }

    fn user_message(&self, tag: &str, payload: &[u8]) -> Result<(), Invalid> {
        if tag.is_empty()
            || tag.len() > self.config.max_tag_len
            || payload.len() > self.config.max_message_size
        {
            return Err(Invalid::UserMessage);
        }
        Ok(())
    }
}

/// Bytes of `n` as a postcard (LEB128) varint.
fn varint_len(n: usize) -> usize {
    let bits = usize::BITS - n.leading_zeros();
    (bits.max(1) as usize).div_ceil(7)
}

/// Checks every value of `message` against the honest bounds and the configured limits.
pub(crate) fn check(message: &Message, config: &Config) -> Result<(), Invalid> {
    let c = Checker { config };
    match message {
        Message::Ping(_) | Message::Ack(_) | Message::Nack(_) => Ok(()),
        Message::PingReq(m) => {
            c.name(&m.target)?;
            c.generation(m.generation)
        }
        Message::Alive(m) => {
            c.name(&m.name)?;
            c.life(m.generation, m.incarnation)?;
            c.tags(&m.tags)
        }
        Message::Suspect(m) => {
            c.name(&m.name)?;
            c.name(&m.from)?;
            c.life(m.generation, m.incarnation)
        }
        Message::Failed(m) => {
            c.name(&m.name)?;
            c.name(&m.from)?;
            c.life(m.generation, m.incarnation)
        }
        Message::Left(m) => {
            c.name(&m.name)?;
            c.life(m.generation, m.incarnation)
        }
        Message::SyncRequest(m) => c.name(&m.from),
        Message::SyncState(m) => {
            c.name(&m.from)?;
            for row in &m.members {
                c.name(&row.name)?;
                c.life(row.generation, row.incarnation)?;
                c.tags(&row.tags)?;
            }
            Ok(())
        }
        Message::Gossip(m) => {
            c.message_id(&m.id)?;
            c.name(&m.from)?;
            if m.hops > MAX_HOPS {
                return Err(Invalid::UserMessage);
            }
            c.user_message(&m.tag, &m.payload)
        }
        Message::IHave(m) => {
            c.name(&m.from)?;
            c.message_id(&m.id)
        }
        Message::Graft(m) => {
            c.name(&m.from)?;
            if m.ids.len() > MAX_GRAFT_IDS {
                return Err(Invalid::TooMany);
            }
            m.ids.iter().try_for_each(|id| c.message_id(id))
        }
        Message::Prune(m) => c.name(&m.from),
        Message::StatePush(m) => {
            c.name(&m.from)?;
            for update in &m.updates {
                state_update(&c, update)?;
            }
            Ok(())
        }
        Message::StateHave(m) => {
            c.name(&m.node)?;
            c.version(m.watermark)
        }
        Message::StateDigest(m) => {
            c.name(&m.from)?;
            for name in m.after.iter().chain(m.until.iter()) {
                c.name(name)?;
            }
            for row in &m.rows {
                c.name(&row.node)?;
                c.generation(row.generation)?;
                c.version(row.watermark)?;
            }
            Ok(())
        }
        Message::StateDelta(m) => {
            c.name(&m.node)?;
            c.generation(m.generation)?;
            c.version(m.to_version)?;
            if m.from_version > m.to_version {
                return Err(Invalid::Version(m.from_version));
            }
            for entry in &m.entries {
                c.entry(entry)?;
                if entry.version > m.to_version {
                    return Err(Invalid::Version(entry.version));
                }
            }
            Ok(())
        }
        Message::Inject(m) => c.user_message(&m.tag, &m.payload),
        // Fixed-size fields only: a key is 32 bytes, a fingerprint 8.
        Message::KeyCommand(_) => Ok(()),
        // No honest keyring holds more keys than a keyring may.
        Message::KeyAck(m) if m.keys.len() > chatter_seal::MAX_KEYS => Err(Invalid::TooMany),
        Message::KeyAck(_) => Ok(()),
    }
}

fn state_update(c: &Checker<'_>, update: &wire::StateUpdate) -> Result<(), Invalid> {
    c.name(&update.node)?;
    c.generation(update.generation)?;
    c.entry(&update.entry)?;
    if update.supersedes.len() > MAX_SUPERSEDES {
        return Err(Invalid::TooMany);
    }
    update.supersedes.iter().try_for_each(|&v| c.version(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Alive, Failed, Gossip, StateDelta, Suspect};

    fn config() -> Config {
        Config::local()
    }

    #[test]
    fn tag_sizes_are_measured_as_postcard_encodes_them() {
        for n in [0usize, 1, 3, 40, 127, 128, 300, 20_000] {
            let mut tags = crate::member::Tags::new();
            for i in 0..n.min(50) {
                tags.insert(format!("k{i}"), "v".repeat(n));
            }
            let encoded = postcard::to_allocvec(&tags).unwrap().len();
            let c = Config {
                max_tags_size: encoded,
                ..Config::local()
            };
            assert!(Checker { config: &c }.tags(&tags).is_ok(), "{n}");
            let c = Config {
                max_tags_size: encoded - 1,
                ..Config::local()
            };
            assert!(Checker { config: &c }.tags(&tags).is_err(), "{n}");
        }
    }

    #[test]
    fn counters_that_could_never_be_honest_are_refused() {
        let c = config();
        let failed = |incarnation, generation| {
            Message::Failed(Failed {
                name: "b".into(),
                generation,
                incarnation,
                from: "c".into(),
            })
        };
        assert!(check(&failed(MAX_INCARNATION, MAX_GENERATION), &c).is_ok());
        assert_eq!(
            check(&failed(u64::MAX, 1), &c),
            Err(Invalid::Incarnation(u64::MAX))
        );
        assert_eq!(
            check(&failed(1, u64::MAX), &c),
            Err(Invalid::Generation(u64::MAX))
        );
        let delta = |from_version, to_version| {
            Message::StateDelta(StateDelta {
                node: "b".into(),
                generation: 1,
                from_version,
                to_version,
                reset: false,
                entries: vec![],
            })
        };
        assert!(check(&delta(0, MAX_VERSION), &c).is_ok());
        assert!(check(&delta(0, u64::MAX), &c).is_err());
        assert!(
            check(&delta(5, 4), &c).is_err(),
            "a range running backwards"
        );
    }

    #[test]
    fn names_tags_and_payloads_obey_the_local_limits() {
        let c = config();
        let long = "x".repeat(c.max_name_len + 1);
        let suspect = Message::Suspect(Suspect {
            name: "b".into(),
            generation: 1,
            incarnation: 1,
            from: long,
            unreachable: false,
        });
        assert!(matches!(check(&suspect, &c), Err(Invalid::Name(_))));
        let mut tags = crate::member::Tags::new();
        tags.insert("k".into(), "v".repeat(c.max_tags_size));
        let alive = Message::Alive(Alive {
            name: "b".into(),
            addr: ([127, 0, 0, 1], 1).into(),
            generation: 1,
            incarnation: 1,
            tags,
        });
        assert!(matches!(check(&alive, &c), Err(Invalid::Tags(_))));
        let gossip = |payload: usize, hops| {
            Message::Gossip(Gossip {
                id: MessageId {
                    origin: "a".into(),
                    generation: 1,
                    seq: 1,
                },
                from: "a".into(),
                hops,
                tag: "t".into(),
                payload: vec![0; payload],
            })
        };
        assert!(check(&gossip(c.max_message_size, 3), &c).is_ok());
        assert!(check(&gossip(c.max_message_size + 1, 3), &c).is_err());
        assert!(check(&gossip(1, u32::MAX), &c).is_err());
    }

    #[test]
    fn a_key_ack_lists_at_most_a_full_keyring() {
        let c = config();
        let ack = |n: usize| {
            Message::KeyAck(wire::KeyAck {
                id: 1,
                refusal: None,
                keys: vec![
                    wire::WireKeyInfo {
                        fingerprint: [1; 8],
                        primary: false,
                    };
                    n
                ],
            })
        };
        assert!(check(&ack(chatter_seal::MAX_KEYS), &c).is_ok());
        assert_eq!(
            check(&ack(chatter_seal::MAX_KEYS + 1), &c),
            Err(Invalid::TooMany)
        );
    }
}
