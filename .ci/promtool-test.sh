#!/usr/bin/env bash
# GET /metrics through Prometheus' own checker: `promtool check metrics` (parse + lint) on the
# scrapes of two chatterd daemons on 127.0.0.1 (ephemeral ports, --profile local), once while
# both are alive and probing each other, and once after one was SIGKILLed (so the failure
# series are non-zero). Also checks that the key series are there.
#
# Installs Debian's `prometheus` package (it provides promtool) and jq/curl when missing.
# Kills only the processes it started (trap on EXIT). Usage: bash .ci/promtool-test.sh
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

log() { echo "promtool-test: $*"; }
# shellcheck source=.ci/lib.sh
source "$ROOT/.ci/lib.sh"

TMP=$(mktemp -d -t chatter-promtool.XXXXXX)
declare -A PID HTTP GOSSIP
DAEMONS=()

fail() {
    echo "promtool-test: FAIL: $*" >&2
    for name in "${DAEMONS[@]}"; do
        echo "---- last lines of $name's log" >&2
        tail -n 15 "$TMP/$name.log" >&2 2>/dev/null || true
    done
    exit 1
}

cleanup() {
    local status=$?
    set +e
    {
        for name in "${DAEMONS[@]}"; do
            kill -KILL "${PID[$name]}"
        done
        wait
    } 2>/dev/null
    rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install_packages() {
    local missing=()
    command -v promtool >/dev/null || missing+=(prometheus)
    command -v jq >/dev/null || missing+=(jq)
    command -v curl >/dev/null || missing+=(curl)
    apt_install "${missing[@]}"
}

# sample FILE SERIES: the value of SERIES (name and labels as written) in a scrape, or empty.
sample() {
    awk -v s="$2" '$1 == s { print $2; exit }' "$1"
}

# check_scrape NAME LABEL: fetches NAME's /metrics into $TMP/NAME-LABEL.prom and checks it.
check_scrape() {
    local name=$1 label=$2 file="$TMP/$1-$2.prom" head
    head=$(curl -sS -m 10 -D - -o "$file" "http://${HTTP[$name]}/metrics") ||
        fail "cannot GET /metrics from $name"
    grep -qi '^content-type: text/plain; version=0.0.4' <<<"$head" ||
        fail "unexpected content type from $name: $head"
    if ! promtool check metrics <"$file" >"$TMP/promtool.out" 2>&1; then
        cat "$TMP/promtool.out" >&2
        fail "promtool check metrics rejects $name's scrape ($label); it was:
$(cat "$file")"
    fi
    for family in chatter_members chatter_probes_sent_total chatter_probes_acked_total \
        chatter_probes_failed_total chatter_probe_rtt_seconds chatter_indirect_probes_sent_total \
        chatter_indirect_probes_served_total chatter_suspicions_raised_total \
        chatter_suspicions_refuted_total chatter_failures_declared_total \
        chatter_packets_sent_total chatter_packets_received_total chatter_sent_bytes_total \
        chatter_received_bytes_total chatter_dropped_total chatter_messages_sent_total \
        chatter_messages_delivered_total chatter_messages_duplicate_total \
        chatter_state_updates_applied_total chatter_pending_broadcasts \
        chatter_active_suspicions chatter_health_score chatter_io_send_errors_total \
        chatter_build_info; do
        grep -q "^# TYPE $family " "$file" || fail "no $family in $name's scrape ($label)"
    done
    log "$name ($label): promtool check metrics passed, $(grep -vc '^#' "$file") samples"
}

start_time=$SECONDS
install_packages

# promtool must be able to say no, or its yes means nothing.
if printf '# TYPE bad_total counter\nbad_total{a="1"} not-a-number\n' | promtool check metrics >/dev/null 2>&1; then
    fail "promtool check metrics accepts a broken sample"
fi

log "building chatterd"
cargo build -p chatterd --quiet
CHATTERD=$TARGET_DIR/debug/chatterd
[[ -x $CHATTERD ]] || fail "no binary at $CHATTERD"

start_daemon prom-1
start_daemon prom-2 --seed "${GOSSIP[prom-1]}"

# Wait until they probe each other, so that counters and the histogram have values.
deadline=$((SECONDS + 30))
ready=false
while ((SECONDS < deadline)); do
    curl -sS -m 5 -o "$TMP/wait.prom" "http://${HTTP[prom-1]}/metrics" || true
    if [[ $(sample "$TMP/wait.prom" 'chatter_members{status="alive"}') == 2 &&
        $(sample "$TMP/wait.prom" chatter_probe_rtt_seconds_count) -gt 0 ]] 2>/dev/null; then
        ready=true
        break
    fi
    sleep 0.2
done
$ready || fail "prom-1 did not report 2 alive members and a probe round trip within 30 s"

check_scrape prom-1 alive
check_scrape prom-2 alive

log "SIGKILL prom-2 (pid ${PID[prom-2]})"
{ kill -KILL "${PID[prom-2]}" && wait "${PID[prom-2]}"; } 2>/dev/null || true # no "Killed" notice
deadline=$((SECONDS + 30))
failed=false
while ((SECONDS < deadline)); do
    curl -sS -m 5 -o "$TMP/wait.prom" "http://${HTTP[prom-1]}/metrics" || true
    if [[ $(sample "$TMP/wait.prom" 'chatter_members{status="failed"}') == 1 ]]; then
        failed=true
        break
    fi
    sleep 0.2
done
$failed || fail "prom-1's metrics do not show prom-2 failed within 30 s"
check_scrape prom-1 after-failure
[[ $(sample "$TMP/prom-1-after-failure.prom" chatter_suspicions_raised_total) -ge 1 ]] ||
    fail "prom-1 raised no suspicion about prom-2"

log "passed in $((SECONDS - start_time))s"
echo "promtool: 1 passed, 0 failed"
