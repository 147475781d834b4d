#!/usr/bin/env bash
# Bounded coverage-guided fuzzing (libFuzzer through cargo-fuzz) of what a stranger's bytes
# reach first: the datagram decoder, a node handed arbitrary datagram sequences with its
# invariants asserted after each (fuzz/fuzz_targets/node.rs), and the opening of sealed
# datagrams. A crash or a broken invariant fails CI with the input saved under artifacts/.
#
# cargo-fuzz passes sanitizer flags that stable rustc accepts only with RUSTC_BOOTSTRAP=1.
# Each target runs FUZZ_SECONDS (default 60; the node target twice that).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz from crates.io"
    cargo install --locked cargo-fuzz >/dev/null
fi
export RUSTC_BOOTSTRAP=1

run() { # DIR TARGET SECONDS
    local dir=$1 target=$2 secs=$3
    echo "-- fuzzing $target for $secs s"
    (cd "$dir" && cargo fuzz run "$target" -- -max_total_time="$secs" -print_final_stats=1 2>&1 |
        grep -E '(DONE|^Done|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|.*(panicked|ERROR|SUMMARY))' || true)
    # cargo fuzz exits non-zero on a crash; run again to get its status without the filter.
    if [[ -n $(ls "$dir/artifacts/$target" 2>/dev/null) ]]; then
        echo "fuzz target $target found a crash:"; ls "$dir/artifacts/$target"; exit 1
    fi
}

run fuzz decode "$seconds"
run fuzz node $((seconds * 2))
run crates/chatter-seal/fuzz open "$seconds"
echo "fuzzing: no crash, every invariant held"
