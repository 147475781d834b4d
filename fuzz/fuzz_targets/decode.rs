//! Arbitrary bytes given to the datagram decoder, as received and behind a valid envelope:
//! no panic, and whatever decodes encodes back to a datagram that decodes the same.
//!
//! `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run decode -- -max_total_time=60`

#![no_main]

use chatter_core::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cluster = wire::cluster_hash("chatter");
    let _ = wire::decode_packet(data, cluster, 65_507);
    let mut datagram = Vec::with_capacity(data.len() + wire::ENVELOPE_LEN);
    wire::write_envelope(&mut datagram, cluster);
    datagram.extend_from_slice(data);
    if let Ok(messages) = wire::decode_packet(&datagram, cluster, 65_507) {
        assert!(messages.len() <= wire::MAX_MESSAGES_PER_DATAGRAM);
        let again = wire::encode_packet(cluster, &messages);
        assert_eq!(wire::decode_packet(&again, cluster, 65_507).ok(), Some(messages));
    }
});
