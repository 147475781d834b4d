#!/usr/bin/env bash
# Multi-host suite: one chatterd per host on hosts made of Linux network namespaces (one bridge,
# veth pairs, an address each, permanent neighbour entries), faults made in the switch between
# them (cut links, a partition, a one-way link, a flapping link, random loss with delay and
# jitter from the harness's NFQUEUE delay line) and in the processes (SIGKILL, SIGSTOP,
# restarts), and DNS seeding against dnsmasq; `chatter-bench hosts --check` fails when Chatter breaks
# a rule (a false verdict, a missed detection, a 5 s pause declared failed, a key lost across a
# partition). Serf runs in the same topology for the side-by-side figures, never asserted.
#
# Needs root and `ip netns` (skips with exit 0 otherwise). Installs serf, nftables, iproute2,
# iptables, iputils-ping and dnsmasq-base from Debian's packages when missing. Bounded: N = 5,
# short windows, a few minutes in all.
# Everything the harness made (namespaces, links, processes) is removed on exit, failure or
# signal: the harness removes its own hosts, and `chatter-bench hosts --cleanup` removes what a
# killed harness left. Usage: bash .ci/hosts-test.sh
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

log() { echo "hosts-test: $*"; }
fail() {
    echo "hosts-test: FAIL: $*" >&2
    exit 1
}
# shellcheck source=.ci/lib.sh
source "$ROOT/.ci/lib.sh"

if [[ $(id -u) != 0 ]]; then
    log "skipped: needs root (network namespaces, bridges, nftables)"
    exit 0
fi
if ! command -v ip >/dev/null 2>&1 || ! ip netns list >/dev/null 2>&1; then
    log "skipped: no working 'ip netns' here"
    exit 0
fi

missing=()
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v tc >/dev/null 2>&1 || missing+=(iproute2)
command -v serf >/dev/null 2>&1 || missing+=(serf)
# The delay line (iptables -j NFQUEUE in the switch), its ping check, and the DNS scenario's
# server.
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v ping >/dev/null 2>&1 || missing+=(iputils-ping)
command -v dnsmasq >/dev/null 2>&1 || missing+=(dnsmasq-base)
if ((${#missing[@]})) && command -v apt-get >/dev/null 2>&1; then
    apt_install "${missing[@]}"
fi
command -v nft >/dev/null 2>&1 || fail "nft is missing and could not be installed"

# Built separately: built together, chatterd would be linked with the Tokio features only the
# bench needs.
log "cargo build --release -p chatterd"
cargo build --release -p chatterd
log "cargo build --release -p chatter-bench"
cargo build --release -p chatter-bench
BENCH=$TARGET_DIR/release/chatter-bench

harness=""
finish() {
    local status=$?
    set +e
    if [[ -n $harness ]] && kill -0 "$harness" 2>/dev/null; then
        # The harness removes its hosts on SIGTERM; SIGKILL after 30 s, then --cleanup.
        kill -TERM "$harness" 2>/dev/null
        for _ in $(seq 60); do
            kill -0 "$harness" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL "$harness" 2>/dev/null
        wait "$harness" 2>/dev/null
    fi
    "$BENCH" hosts --cleanup >/dev/null 2>&1
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM

# hosts ARGS...: one harness run in the background (so the trap can stop it), its status.
hosts() {
    local rc=0
    "$BENCH" --chatterd "$TARGET_DIR/release/chatterd" hosts "$@" &
    harness=$!
    wait "$harness" || rc=$?
    harness=""
    return "$rc"
}

systems=chatter
if command -v serf >/dev/null 2>&1; then
    systems=chatter,serf
else
    log "serf not installed (no apt-get?): Chatter only"
fi

log "side by side: silent host loss, 5 s pause, partition, 5 % and 20 % loss with 20 ms delay and 50 ms jitter ($systems)"
hosts --nodes 5 --systems "$systems" --runs 1 \
    --scenarios silent,pause,partition,loss --pauses 5 --losses 5,20 --seconds 20 \
    --delay 20ms --jitter 50ms --check

log "Chatter alone: crash, asymmetric and flapping links, rolling restart"
hosts --nodes 5 --systems chatter --runs 1 \
    --scenarios crash,asymmetric,flapping,restart --window-seconds 20 --check

log "Chatter alone: LAN discovery without seeds (IPv4 sealed, IPv6 link-local on [::]), intruders refused"
hosts --nodes 5 --systems chatter --runs 1 --scenarios discover --check

if command -v dnsmasq >/dev/null 2>&1; then
    log "Chatter alone: DNS seeding against dnsmasq, records changing as hosts come and go"
    hosts --nodes 6 --systems chatter --scenarios dns --check
else
    fail "dnsmasq is missing and could not be installed (the dns scenario needs it)"
fi

log "passed"
