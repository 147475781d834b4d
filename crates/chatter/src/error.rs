//! The errors of the runtime.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use chatter_core::{
    BroadcastError, ConfigError, EncryptionError, KeyOpError, StateError, TagsError,
};

/// Everything that can go wrong when starting or commanding a node.
///
/// Each variant says whether anything changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The UDP socket could not be created or bound (address in use, permission denied, no such
    /// local address). Nothing was started.
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// A seed is not of the form `host:port` (`10.0.0.1:2428`, `[fd00::1]:2428`,
    /// `seed.example.com:2428`). Nothing was started, or the seed was not added.
    #[error("invalid seed {seed:?}: {reason}")]
    InvalidSeed {
        /// The seed as given.
        seed: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A seed given to [`Handle::join`](crate::Handle::join) could not be resolved. The seed was
    /// not added; the node is unchanged. (Seeds given to the builder never fail this way: they
    /// are logged and retried.)
    #[error("cannot resolve seed {seed:?}: {source}")]
    Resolve {
        /// The seed as given.
        seed: String,
        /// What the resolver said.
        #[source]
        source: io::Error,
    },

    /// The socket is bound to a wildcard address (`0.0.0.0` or `[::]`) and no address to
    /// advertise to other members could be found (no route to any seed nor a default route).
    /// Nothing was started: set one with [`Builder::advertise`](crate::Builder::advertise).
    #[error("cannot pick an address to advertise for {bind}: {source}; set one with advertise()")]
    Advertise {
        /// The bound address.
        bind: SocketAddr,
        /// Why no interface address was found.
        #[source]
        source: io::Error,
    },

    /// The data directory ([`Builder::data_dir`](crate::Builder::data_dir)) cannot be created,
    /// is not a directory, or the node's state file cannot be written in it. Nothing was
    /// started (the directory may have been created).
    #[error("data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// The discovery settings ([`Builder::discover`](crate::Builder::discover)) break a rule
    /// (see [`Discovery::validate`](crate::Discovery::validate)). Nothing was started.
    #[error("invalid discovery settings: {0}")]
    Discovery(&'static str),

    /// No discovery socket could be opened on the discovery port (for either family: another
    /// program holds the port without sharing it, or the system has no multicast). Nothing
    /// was started.
    #[error("cannot open a discovery socket on UDP port {port}: {source}")]
    DiscoverySocket {
        /// The discovery port.
        port: u16,
        /// What the operating system said (for the last family tried).
        #[source]
        source: io::Error,
    },

    /// The protocol configuration breaks a rule. Nothing was started.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The encryption setting is refused: a keyed mode without a keyring, or a packet budget
    /// without room for the sealing overhead. Nothing was started.
    #[error(transparent)]
    Encryption(#[from] EncryptionError),

    /// The tags are too large. Nothing was started, or the node's tags are unchanged.
    #[error(transparent)]
    Tags(#[from] TagsError),

    /// A key/value write was refused (key empty or too long, value too large, state full, node
    /// leaving). The node's state is unchanged and nothing was gossiped.
    #[error(transparent)]
    State(#[from] StateError),

    /// A user message was refused (tag empty or too long, payload too large, node leaving).
    /// Nothing was sent, and the message was not delivered locally either.
    #[error(transparent)]
    Broadcast(#[from] BroadcastError),

    /// A value given to [`Handle::broadcast`](crate::Handle::broadcast) could not be encoded as
    /// JSON (a map with non-string keys, a `Serialize` implementation that failed). Nothing was
    /// sent.
    #[error("cannot encode the message as JSON: {0}")]
    Encode(#[source] serde_json::Error),

    /// A key operation did not start: the node is not in the sealed mode, too many operations
    /// are running, or the local keyring refused it (removing the primary, using a key not
    /// installed, a full keyring). Nothing changed, here or elsewhere.
    #[error(transparent)]
    Keys(#[from] KeyOpError),

    /// The node has stopped (after [`Handle::leave`](crate::Handle::leave),
    /// [`Handle::shutdown`](crate::Handle::shutdown), or once every handle was dropped); the
    /// command was not carried out. The last snapshot stays readable.
    #[error("the chatter node has stopped")]
    Stopped,
}
