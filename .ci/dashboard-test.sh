#!/usr/bin/env bash
# The web dashboard in headless Chromium, driven through chromedriver's WebDriver HTTP API with
# curl and jq.
#
# Starts three chatterd daemons on 127.0.0.1 (ephemeral ports, --profile local), loads the
# dashboard of the first, checks that it shows all three alive, SIGKILLs the third and checks
# that the same page, without a reload, shows it failed (with its evidence and a member-failed
# event in the log) within a deadline. Screenshots: target/dashboard-alive.png (before) and
# target/dashboard.png (after, the CI artifact).
#
# Installs chromium, chromium-driver, jq and a font from Debian's packages when missing.
# Kills only the processes it started (trap on EXIT). Usage: bash .ci/dashboard-test.sh
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
ALIVE_DEADLINE=${ALIVE_DEADLINE:-40}   # seconds for the page to show 3 members alive
FAILED_DEADLINE=${FAILED_DEADLINE:-30} # seconds for the page to show the killed one failed

log() { echo "dashboard-test: $*"; }
# shellcheck source=.ci/lib.sh
source "$ROOT/.ci/lib.sh"

TMP=$(mktemp -d -t chatter-dashboard.XXXXXX)
declare -A PID HTTP GOSSIP
DAEMONS=()
WD_PGID=""
WD_PORT=""
SID=""

dump_logs() {
    for name in "${DAEMONS[@]}"; do
        echo "---- last lines of $name's log" >&2
        tail -n 15 "$TMP/$name.log" >&2 2>/dev/null || true
    done
    if [[ -f $TMP/chromedriver.log ]]; then
        echo "---- last lines of chromedriver's log" >&2
        tail -n 15 "$TMP/chromedriver.log" >&2 || true
    fi
}

fail() {
    echo "dashboard-test: FAIL: $*" >&2
    dump_logs
    exit 1
}

cleanup() {
    local status=$?
    set +e
    if [[ -n $SID && -n $WD_PORT ]]; then
        curl -s -m 10 -X DELETE "http://127.0.0.1:$WD_PORT/session/$SID" >/dev/null 2>&1
    fi
    if [[ -n $WD_PGID ]]; then
        # chromedriver was started in a session of its own: its group holds it and the browser.
        kill -TERM -- "-$WD_PGID" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 -- "-$WD_PGID" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL -- "-$WD_PGID" 2>/dev/null
    fi
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
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
    command -v jq >/dev/null || missing+=(jq)
    command -v curl >/dev/null || missing+=(curl)
    dpkg -s fonts-dejavu-core >/dev/null 2>&1 || missing+=(fonts-dejavu-core)
    apt_install "${missing[@]}"
}

# wd METHOD PATH [JSON]: one WebDriver command; prints the answer's JSON.
wd() {
    local method=$1 path=$2 body=${3:-}
    local args=(-sS -m 60 -X "$method" -H 'Content-Type: application/json')
    [[ -n $body ]] && args+=(--data-binary "$body")
    curl "${args[@]}" "http://127.0.0.1:$WD_PORT$path"
}

# js SCRIPT: runs SCRIPT in the page (a function body) and prints its return value as JSON.
js() {
    local answer
    answer=$(wd POST "/session/$SID/execute/sync" "$(jq -nc --arg s "$1" '{script: $s, args: []}')") ||
        fail "WebDriver execute failed"
    if jq -e '.value | type == "object" and has("error")' <<<"$answer" >/dev/null 2>&1; then
        fail "WebDriver error: $(jq -c .value <<<"$answer")"
    fi
    jq -c '.value' <<<"$answer"
}

screenshot() {
    local answer
    answer=$(wd GET "/session/$SID/screenshot") || fail "WebDriver screenshot failed"
    jq -r '.value' <<<"$answer" | base64 -d >"$1" || fail "cannot decode the screenshot"
    log "screenshot: ${1#"$ROOT"/}"
}

# The members table as the page shows it: "name=status ..." sorted by name.
ROWS_JS='return Array.from(document.querySelectorAll("#members tbody tr[data-member]")).map(r => r.dataset.member + "=" + r.dataset.status).join(" ");'

start_time=$SECONDS
install_packages

log "building chatterd"
cargo build -p chatterd --quiet
CHATTERD=$TARGET_DIR/debug/chatterd
[[ -x $CHATTERD ]] || fail "no binary at $CHATTERD"

start_daemon dash-1 --tag role=web
start_daemon dash-2 --seed "${GOSSIP[dash-1]}" --tag role=db
start_daemon dash-3 --seed "${GOSSIP[dash-1]}" --tag role=cache
URL="http://${HTTP[dash-1]}/"

# Something to show in the System and Checks columns. Sample system status (in chatterd's
# formats) is set only where the daemon does not publish its own; the failing check's name is
# the test's own.
for name in dash-1 dash-2 dash-3; do
    base="http://${HTTP[$name]}"
    have=0
    for _ in $(seq 30); do # chatterd publishes its own at start, when it has the feature
        have=$(curl -sS -m 5 "$base/v1/kv?node=$name&prefix=sys/" | jq '[.[]?.entries[]?] | length') ||
            fail "cannot read $name's key/values"
        [[ $have != 0 ]] && break
        sleep 0.1
    done
    if [[ $have == 0 ]]; then
        boot=$(($(date +%s) - 93784))
        for kv in "load=0.42 0.35 0.30" "cpu=12.5" "cores=2" "mem=3221225472 8589934592" \
            "disk=91268055040 100000000000" "boot=$boot"; do
            curl -sS -m 5 -X PUT --data-binary "${kv#*=}" "$base/v1/kv/sys/${kv%%=*}" >/dev/null ||
                fail "cannot set sys/${kv%%=*} on $name"
        done
    fi
done
curl -sS -m 5 -X PUT --data-binary '{"status":"critical","output":"replica lag 42 s"}' \
    "http://${HTTP[dash-2]}/v1/kv/check/ci-replication" >/dev/null ||
    fail "cannot set a check key on dash-2"

# chromedriver's own --port=0 sometimes fails to bind ("IPv4 port not available"): pick a free
# loopback port here, and try again with another if chromedriver still loses a race for it.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
WD_PORT=
for attempt in 1 2 3 4 5; do
    port=$(free_port) || fail "cannot find a free port for chromedriver"
    log "starting chromedriver on port $port (attempt $attempt)"
    setsid chromedriver --port="$port" >"$TMP/chromedriver.log" 2>&1 </dev/null &
    WD_PGID=$!
    for _ in $(seq 100); do
        if grep -q "started successfully" "$TMP/chromedriver.log"; then
            WD_PORT=$port
            break
        fi
        kill -0 "$WD_PGID" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n $WD_PORT ]] && break
    kill -KILL -- "-$WD_PGID" 2>/dev/null || true
    wait "$WD_PGID" 2>/dev/null || true
done
[[ -n $WD_PORT ]] || fail "chromedriver did not start after 5 attempts"

CHROMIUM=$(command -v chromium)
caps=$(jq -nc --arg bin "$CHROMIUM" --arg profile "$TMP/chromium-profile" '{
    capabilities: {alwaysMatch: {browserName: "chrome", "goog:chromeOptions": {binary: $bin, args: [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1440,1000", ("--user-data-dir=" + $profile)
    ]}}}}')
answer=$(wd POST /session "$caps") || fail "cannot create a WebDriver session"
SID=$(jq -r '.value.sessionId // empty' <<<"$answer")
[[ -n $SID ]] || fail "no WebDriver session: $answer"

log "loading $URL"
wd POST "/session/$SID/url" "$(jq -nc --arg u "$URL" '{url: $u}')" >/dev/null || fail "cannot load $URL"
js 'window.__chatterNoReload = "still the same page"; return true;' >/dev/null

want="dash-1=alive dash-2=alive dash-3=alive"
seen=""
deadline=$((SECONDS + ALIVE_DEADLINE))
while ((SECONDS < deadline)); do
    seen=$(js "$ROWS_JS" | jq -r .)
    [[ $seen == "$want" ]] && break
    sleep 0.5
done
[[ $seen == "$want" ]] || fail "after ${ALIVE_DEADLINE}s the page shows [$seen], expected [$want]"
log "page shows all 3 alive: $seen"

# Wait for the key/values to reach dash-1 and the page (refreshed every 3 s, or by event).
deadline=$((SECONDS + 15))
ready=false
while ((SECONDS < deadline)); do
    if [[ $(js 'const r = document.querySelector("tr[data-member=\"dash-2\"]");
        return !!(r && r.querySelector("[data-check=\"ci-replication\"]") && r.querySelector("[data-sys]"));') == true ]]; then
        ready=true
        break
    fi
    sleep 0.5
done
$ready || fail "the page does not show dash-2's failing check ci-replication and its system status"
[[ $(js 'return document.getElementById("stream").dataset.state;') == '"open"' ]] ||
    fail "the event stream is not open"
[[ $(js 'return document.getElementById("error").hidden;') == true ]] ||
    fail "the page shows an error: $(js 'return document.getElementById("error").textContent;')"
mkdir -p "$TARGET_DIR"
screenshot "$TARGET_DIR/dashboard-alive.png"

log "SIGKILL dash-3 (pid ${PID[dash-3]})"
{ kill -KILL "${PID[dash-3]}" && wait "${PID[dash-3]}"; } 2>/dev/null || true # no "Killed" notice
killed_at=$SECONDS

want="dash-1=alive dash-2=alive dash-3=failed"
deadline=$((SECONDS + FAILED_DEADLINE))
while ((SECONDS < deadline)); do
    seen=$(js "$ROWS_JS" | jq -r .)
    [[ $seen == "$want" ]] && break
    sleep 0.25
done
[[ $seen == "$want" ]] || fail "${FAILED_DEADLINE}s after the kill the page shows [$seen], expected [$want]"
log "page shows dash-3 failed about $((SECONDS - killed_at))s after the kill: $seen"

[[ $(js 'return window.__chatterNoReload || null;') == '"still the same page"' ]] ||
    fail "the page was reloaded"
status_text=$(js 'return document.querySelector("tr[data-member=\"dash-3\"] td[data-field=\"status\"]").textContent.trim();' | jq -r .)
[[ $status_text == *failed* ]] || fail "dash-3's status cell reads [$status_text], not failed"
evidence=$(js 'const e = document.querySelector("tr[data-member=\"dash-3\"] [data-field=\"evidence\"]"); return e ? e.textContent : "";' | jq -r .)
[[ $evidence == *"suspected by"* ]] || fail "dash-3's evidence reads [$evidence]"
event=$(js 'const e = Array.from(document.querySelectorAll("#events li[data-type=\"member-failed\"]")).find(li => li.textContent.includes("dash-3")); return e ? e.textContent : "";' | jq -r .)
[[ -n $event ]] || fail "no member-failed event about dash-3 in the event log"
log "evidence: $evidence"
log "event log: $event"

sleep 0.5 # let the last render settle before the picture
screenshot "$TARGET_DIR/dashboard.png"

log "passed in $((SECONDS - start_time))s"
echo "dashboard: 1 passed, 0 failed"
