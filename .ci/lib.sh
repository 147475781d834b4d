# Shared by the extra CI suites; sourced, not run. Callers define log, fail, CHATTERD, TMP and
# the arrays PID, HTTP, GOSSIP (associative) and DAEMONS before calling these.

# apt_install PACKAGE...: installs the given Debian packages (none: nothing to do).
apt_install() {
    (($#)) || return 0
    log "installing $* from Debian's packages"
    [[ $(id -u) == 0 ]] || fail "need root to apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Packages that ship a service (prometheus) do not start it here: only their tools are used.
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# start_daemon NAME [ARGS...]: starts chatterd on 127.0.0.1 (ephemeral ports, profile local) and
# waits (15 s at most) for its ready line; records its pid and addresses.
start_daemon() {
    local name=$1 line="" pid
    shift
    RUST_LOG=${RUST_LOG:-info} "$CHATTERD" --listen 127.0.0.1:0 --http 127.0.0.1:0 \
        --node-name "$name" --profile local "$@" >"$TMP/$name.out" 2>"$TMP/$name.log" </dev/null &
    pid=$!
    PID[$name]=$pid
    DAEMONS+=("$name")
    for _ in $(seq 150); do
        line=$(grep -m1 '^chatterd ready ' "$TMP/$name.out" 2>/dev/null || true)
        [[ -n $line ]] && break
        kill -0 "$pid" 2>/dev/null || fail "$name exited before its ready line"
        sleep 0.1
    done
    [[ -n $line ]] || fail "$name printed no ready line in 15 s"
    HTTP[$name]=$(sed -E 's/.* http=([^ ]+).*/\1/' <<<"$line")
    GOSSIP[$name]=$(sed -E 's/.* gossip=([^ ]+).*/\1/' <<<"$line")
    log "$name ready: pid $pid, gossip ${GOSSIP[$name]}, http ${HTTP[$name]}"
}
