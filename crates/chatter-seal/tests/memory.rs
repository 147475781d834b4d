//! The memory an opener holds at its epoch bound, measured with a counting allocator. Alone in
//! its test binary, so no other test allocates while it measures.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use chatter_seal::{Keyring, Opener, Sealer, MAX_EPOCHS};
use common::{key, plain, CLUSTER};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn an_opener_at_its_epoch_bound_holds_under_384_kib() {
    let ring = Keyring::new(key(1));
    let p = plain(CLUSTER, 100);
    let before = LIVE.load(Ordering::Relaxed);
    let mut opener = Opener::new();
    let mut peak = 0;
    // Twice the bound, in a scattered order, so that evictions reshape the index.
    for i in 0..2 * MAX_EPOCHS as u64 {
        let epoch = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let sealed = Sealer::new(epoch).seal(&ring, CLUSTER, &p).unwrap();
        opener.open(&ring, CLUSTER, &sealed).unwrap();
        drop(sealed);
        peak = peak.max(LIVE.load(Ordering::Relaxed) - before);
    }
    let held = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(opener.epochs(), MAX_EPOCHS);
    println!(
        "opener with {} epochs holds {held} bytes ({:.1} per epoch), peak {peak}",
        opener.epochs(),
        held as f64 / MAX_EPOCHS as f64
    );
    assert!(held < 384 * 1024, "{held} bytes");
    drop(opener);
}
