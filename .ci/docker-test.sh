#!/usr/bin/env bash
# The deployment files, checked for real: `bash .ci/docker-test.sh` from the repository root
# (CI runs it as root, with CI=true and no stdin).
#
# 1. Static checks, without Docker: every manifest of deploy/kubernetes/ and deploy/compose.yaml
#    parses as YAML and says what the daemon needs (the seed is the headless Service, probes on
#    /health, the key from the Secret, no namespace written in); the systemd unit passes
#    `systemd-analyze verify` without a single warning (when systemd-analyze exists).
# 2. The image: built with the repository's Dockerfile, exactly as a user builds it, only the
#    base images differ: with no registry to pull from, they are made here, once, and kept
#    (debootstrap --variant=minbase bookworm + `docker import` for the runtime; that base plus
#    gcc and this host's Rust toolchain for the builder). Then one container: /health through
#    the published port, the HEALTHCHECK turns `healthy`, the process runs as uid 10001.
# 3. The compose cluster: deploy/compose.yaml under a private project name, with a fresh gossip
#    key and HTTP token; waits (deadline) until chatter-1's /v1/members lists 5 alive members,
#    checks that the key and the token are in force, that a key/value written on chatter-1 is
#    read on chatter-5 with the image's CLI, that a container frozen for 5 s (`docker pause`)
#    is never failed, that one taken off the network is failed and welcomed back when it
#    returns, and that `stop` of a node is a graceful leave.
# 4. The multi-host suite on the image (`chatter-bench hosts --containers`, as root): five
#    containers of the image, each with its own address on a switch of the harness's own;
#    silent host loss, a crash, a 5 s freeze and a rolling restart with data dirs, asserted.
#
# CHATTER_DOCKER_IMAGE_TEST=0 stops after the static checks (seconds instead of minutes: the
# image's build dominates). Skips with exit 0 when Docker is not usable (no client, no daemon, no permission). Removes
# everything it created: the compose project (`down -v`), its container, and the images it
# tagged as test images (chatter-ci/chatter*:test-PID); the base images stay, as a cache
# (CHATTER_DOCKER_KEEP=1 keeps the test images too, e.g. to time a warm rebuild).
#
# Figures printed at the end: base images (when made), image build, image size, cluster
# convergence.
set -euo pipefail

cd "$(dirname "$0")/.."

log() { echo "docker-test: $*"; }
fail() {
    echo "docker-test: FAIL: $*" >&2
    exit 1
}

# Bounds of every wait, in seconds.
HEALTH_DEADLINE=60
CONVERGE_DEADLINE=60
LEAVE_DEADLINE=20
# How long a container is frozen (the pause every node must tolerate), and the bound on
# detecting, and on welcoming back, a container taken off the network.
PAUSE_SECONDS=5
CUT_DEADLINE=60

DEBIAN_RELEASE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
RUNTIME_BASE=chatter-ci/debian:${DEBIAN_RELEASE}-minbase
TAG=test-$$
IMAGE=chatter-ci/chatter:$TAG
BUILD_STAGE_IMAGE=chatter-ci/chatter-build:$TAG
PROJECT=chatterci$$
SINGLE=chatter-ci-$$-single
COMPOSE_FILE=deploy/compose.yaml
TMP=$(mktemp -d "${TMPDIR:-/tmp}/chatter-docker-test.XXXXXX")
declare -a FIGURES=()

cleanup() {
    local rc=$?
    set +e
    if [[ $rc != 0 && -n ${CLUSTER_UP:-} ]]; then
        echo "docker-test: logs of the cluster:" >&2
        compose logs --no-color --tail 30 >&2 2>&1
    fi
    # A container left frozen by a failed check would not stop.
    [[ -n ${paused:-} ]] && docker unpause "$paused" >/dev/null 2>&1
    [[ -n ${CLUSTER_UP:-} ]] && compose down -v --remove-orphans >/dev/null 2>&1
    # The hosts harness removes its containers on SIGTERM; what a killed one left goes with
    # its --cleanup (before the image they run is removed).
    if [[ -n ${HOSTS_HARNESS:-} ]] && kill -0 "$HOSTS_HARNESS" 2>/dev/null; then
        kill -TERM "$HOSTS_HARNESS" 2>/dev/null
        for _ in $(seq 60); do
            kill -0 "$HOSTS_HARNESS" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL "$HOSTS_HARNESS" 2>/dev/null
        wait "$HOSTS_HARNESS" 2>/dev/null
        "$BENCH" hosts --cleanup >/dev/null 2>&1
    fi
    if [[ -n ${DOCKER_USED:-} ]]; then
        docker rm -f "$SINGLE" >/dev/null 2>&1
        remove_failed_build_layers
        if [[ ${CHATTER_DOCKER_KEEP:-0} != 1 ]]; then
            docker rmi "$IMAGE" "$BUILD_STAGE_IMAGE" >/dev/null 2>&1
        else
            log "kept $IMAGE and $BUILD_STAGE_IMAGE (CHATTER_DOCKER_KEEP=1)"
        fi
    fi
    # A debootstrap that failed half-way may leave /proc, /sys or /dev mounted in its root:
    # unmount them, and never let rm cross into a mount.
    findmnt -rno TARGET 2>/dev/null | grep "^$TMP/" | sort -r | xargs -r umount -l 2>/dev/null
    rm -rf --one-file-system "$TMP"
    exit $rc
}
# A build that fails leaves the images of the steps that succeeded, untagged: remove those that
# descend from this script's base images (and only those).
remove_failed_build_layers() {
    local ours=() id parent
    for image in "$RUNTIME_BASE" "${BUILDER:-}"; do
        [[ -n $image ]] && ours+=("$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null)")
    done
    for id in $(docker image ls -a -q --no-trunc --filter dangling=true); do
        parent=$id
        while [[ -n $parent ]]; do
            if [[ " ${ours[*]} " == *" $parent "* ]]; then
                docker rmi "$id" >/dev/null 2>&1
                break
            fi
            parent=$(docker image inspect --format '{{.Parent}}' "$parent" 2>/dev/null)
        done
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

figure() {
    FIGURES+=("$1")
    log "$1"
}

apt_install() {
    (($#)) || return 0
    [[ $(id -u) == 0 ]] || fail "need root to apt-get install $*"
    command -v apt-get >/dev/null || fail "no apt-get to install $*"
    log "installing $* from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# 1. Static checks.

if ! python3 -c 'import yaml' 2>/dev/null; then
    apt_install python3-yaml
fi

log "checking deploy/kubernetes/*.yaml and $COMPOSE_FILE"
python3 - "$COMPOSE_FILE" deploy/kubernetes/*.yaml <<'EOF'
import sys, yaml

def die(msg):
    sys.exit(f"docker-test: FAIL: {msg}")

compose_path, k8s_paths = sys.argv[1], sys.argv[2:]
docs = {}
for path in k8s_paths:
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if doc is None:
                continue
            for key in ("apiVersion", "kind"):
                if key not in doc:
                    die(f"{path}: a document without {key}")
            if doc["kind"] == "Kustomization":
                for res in doc.get("resources", []):
                    if f"deploy/kubernetes/{res}" not in k8s_paths:
                        die(f"{path}: resource {res} does not exist")
                continue
            meta = doc.get("metadata") or {}
            if not meta.get("name"):
                die(f"{path}: {doc['kind']} without metadata.name")
            if "namespace" in meta:
                die(f"{path}: {doc['kind']} names a namespace; the manifests must not")
            docs[doc["kind"]] = doc

for kind in ("Service", "DaemonSet", "Secret"):
    if kind not in docs:
        die(f"no {kind} in deploy/kubernetes")
service, ds, secret = docs["Service"], docs["DaemonSet"], docs["Secret"]
if service["spec"].get("clusterIP") != "None":
    die("the Service is not headless (clusterIP: None)")
gossip = [p for p in service["spec"]["ports"] if p.get("protocol") == "UDP"]
if not gossip:
    die("the headless Service has no UDP gossip port")
pod = ds["spec"]["template"]
labels = pod["metadata"]["labels"]
if any(labels.get(k) != v for k, v in service["spec"]["selector"].items()):
    die("the Service's selector does not select the DaemonSet's pods")
if ds["spec"]["selector"]["matchLabels"].items() - labels.items():
    die("the DaemonSet's selector does not match its own pods")
container = pod["spec"]["containers"][0]
seed = f"--seed={service['metadata']['name']}:{gossip[0]['port']}"
if seed not in container.get("args", []):
    die(f"the DaemonSet does not seed with the headless Service ({seed})")
for probe in ("livenessProbe", "readinessProbe"):
    get = container.get(probe, {}).get("httpGet", {})
    if get.get("path") != "/health":
        die(f"{probe} is not an HTTP GET of /health")
    names = [p["name"] for p in container["ports"]]
    if get.get("port") not in names:
        die(f"{probe} probes port {get.get('port')!r}, not one of the container's {names}")
env = {e["name"]: e for e in container["env"]}
key = env.get("CHATTER_GOSSIP_KEY", {}).get("valueFrom", {}).get("secretKeyRef")
if not key or key["name"] != secret["metadata"]["name"]:
    die("CHATTER_GOSSIP_KEY does not come from the Secret")
if key["key"] not in secret.get("stringData", {}) and key["key"] not in secret.get("data", {}):
    die(f"the Secret has no {key['key']}")
if not pod["spec"].get("securityContext", {}).get("runAsNonRoot"):
    die("the pods may run as root")

with open(compose_path) as f:
    compose = yaml.safe_load(f)
services = compose["services"]
if len(services) != 5:
    die(f"{compose_path}: {len(services)} services, not 5")
published = [s for s in services.values() if s.get("ports")]
if len(published) != 1 or "CHATTER_DASHBOARD_PORT" not in published[0]["ports"][0]:
    die(f"{compose_path}: not exactly one dashboard port, from CHATTER_DASHBOARD_PORT")
print("docker-test: manifests: ok "
      f"({len(k8s_paths)} Kubernetes files, {len(services)} compose services)")
EOF

if command -v systemd-analyze >/dev/null; then
    log "systemd-analyze verify deploy/systemd/chatterd.service"
    # verify checks that ExecStart's binary exists: point it at one that does, nothing else.
    mkdir -p "$TMP/unit"
    sed "s#^ExecStart=/usr/local/bin/chatterd #ExecStart=$(command -v true) #" \
        deploy/systemd/chatterd.service >"$TMP/unit/chatterd.service"
    # It exits 0 on unknown keys and bad values (it only warns): any output is a failure.
    out=$(systemd-analyze verify "$TMP/unit/chatterd.service" 2>&1) ||
        fail "systemd-analyze verify: $out"
    [[ -z $out ]] || fail "systemd-analyze verify warns: $out"
    log "systemd unit: ok"
else
    log "systemd-analyze not installed: unit not verified"
fi

# ---------------------------------------------------------------------------------------------
# 2. Docker.

if [[ ${CHATTER_DOCKER_IMAGE_TEST:-1} == 0 ]]; then
    log "SKIPPED the image and compose checks: CHATTER_DOCKER_IMAGE_TEST=0"
    exit 0
fi
if ! command -v docker >/dev/null 2>&1; then
    log "SKIPPED the image and compose checks: no docker command"
    exit 0
fi
if ! docker info >/dev/null 2>&1; then
    log "SKIPPED the image and compose checks: the Docker daemon is not usable ($(docker info 2>&1 | tail -1))"
    exit 0
fi
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
else
    log "SKIPPED the image and compose checks: neither \`docker compose\` nor docker-compose"
    exit 0
fi
log "docker $(docker version --format '{{.Server.Version}}'), $("${COMPOSE[@]}" version --short 2>/dev/null || echo compose)"

compose() {
    "${COMPOSE[@]}" -p "$PROJECT" -f "$COMPOSE_FILE" "$@"
}
DOCKER_USED=1


now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

# `http_request METHOD URL [TOKEN [BODY]]`: the answer's body in $TMP/body, its status code in
# $TMP/status (0 when there was no answer). `http_get URL` is `http_request GET URL`.
http_request() {
    python3 - "$TMP" "$@" <<'EOF'
import sys, urllib.request, urllib.error
tmp, method, url = sys.argv[1:4]
token = sys.argv[4] if len(sys.argv) > 4 else ""
data = sys.argv[5].encode() if len(sys.argv) > 5 else None
req = urllib.request.Request(url, data=data, method=method)
if token:
    req.add_header("Authorization", f"Bearer {token}")
try:
    with urllib.request.urlopen(req, timeout=3) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
except Exception as e:
    status, body = 0, str(e).encode()
open(f"{tmp}/body", "wb").write(body)
open(f"{tmp}/status", "w").write(f"{status}\n")
EOF
}
http_get() { http_request GET "$1"; }

# ---------------------------------------------------------------------------------------------
# Base images, made once and kept.

make_runtime_base() {
    command -v debootstrap >/dev/null || apt_install debootstrap
    [[ $(id -u) == 0 ]] || fail "debootstrap needs root"
    local root=$TMP/rootfs started
    started=$(now)
    log "making $RUNTIME_BASE: debootstrap --variant=minbase $DEBIAN_RELEASE from $DEBIAN_MIRROR"
    debootstrap --variant=minbase "$DEBIAN_RELEASE" "$root" "$DEBIAN_MIRROR" >"$TMP/debootstrap.log" 2>&1 ||
        { tail -20 "$TMP/debootstrap.log" >&2; fail "debootstrap failed"; }
    # As debian:bookworm-slim does: no documentation, manuals or translations, now or in
    # packages installed later; no package lists or downloaded archives.
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
    rm -rf "$root"/usr/share/{man,info,locale,lintian}/* "$root"/var/lib/apt/lists/* \
        "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old "$root"/var/log/*.log
    tar --numeric-owner -C "$root" -c . |
        docker import --change 'CMD ["/bin/bash"]' \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            - "$RUNTIME_BASE" >/dev/null
    rm -rf --one-file-system "$root"
    figure "runtime base image $RUNTIME_BASE made in $(since "$started") s"
}

# The builder: the runtime base, a C toolchain (the linker, and ring's C and assembly), CA
# certificates (cargo fetches from crates.io over TLS) with the host's own additions
# (/usr/local/share/ca-certificates: a network whose egress proxy re-signs TLS needs them, as
# the host's cargo does), and this host's Rust toolchain. The recipe's hash is part of the tag,
# so a new toolchain, another CA or a change of the recipe makes a new builder.
builder_recipe() {
    cat <<EOF
FROM $RUNTIME_BASE
RUN apt-get update \\
 && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
COPY local-ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
COPY rust /usr/local/rust
ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    CARGO_HOME=/usr/local/cargo
EOF
}

local_cas() {
    find /usr/local/share/ca-certificates -maxdepth 1 -name '*.crt' -type f 2>/dev/null | sort
}

make_builder() {
    local sysroot=$1 started context=$TMP/builder
    started=$(now)
    log "making $BUILDER from $RUNTIME_BASE and the toolchain in $sysroot"
    mkdir -p "$context/local-ca"
    local_cas | xargs -r cp -t "$context/local-ca/"
    # Hard links when the toolchain is on the same file system (no copy); without its
    # documentation (0.8 GB) and sources.
    cp -al "$sysroot" "$context/rust" 2>/dev/null || cp -a "$sysroot" "$context/rust"
    rm -rf "$context/rust/share/doc" "$context/rust/lib/rustlib/src"
    builder_recipe >"$context/Dockerfile"
    docker build --force-rm -q -t "$BUILDER" "$context" >"$TMP/builder.log" 2>&1 ||
        { tail -20 "$TMP/builder.log" >&2; fail "cannot build $BUILDER"; }
    rm -rf "$context"
    docker run --rm "$BUILDER" cargo --version >/dev/null || fail "$BUILDER has no working cargo"
    figure "builder image $BUILDER made in $(since "$started") s"
}

if ! docker image inspect "$RUNTIME_BASE" >/dev/null 2>&1; then
    make_runtime_base
else
    log "using $RUNTIME_BASE (made earlier)"
fi
command -v rustc >/dev/null || fail "no rustc on this host to make the builder image from"
SYSROOT=$(rustc --print sysroot)
RUST_VERSION=$(rustc --version | awk '{print $2}')
RECIPE_HASH=$({ builder_recipe; rustc -vV; local_cas | xargs -r cat; } | sha256sum | cut -c1-12)
BUILDER=chatter-ci/rust:${RUST_VERSION}-${DEBIAN_RELEASE}-${RECIPE_HASH}
if ! docker image inspect "$BUILDER" >/dev/null 2>&1; then
    make_builder "$SYSROOT"
else
    log "using $BUILDER (made earlier)"
fi

# ---------------------------------------------------------------------------------------------
# The image, from the repository's Dockerfile.

started=$(now)
# CARGO_PROFILE=ci-image: the release profile without fat LTO (Cargo.toml says why);
# CHATTER_DOCKER_PROFILE=release builds what users get (two fat-LTO links more).
PROFILE=${CHATTER_DOCKER_PROFILE:-ci-image}
build_args=(--build-arg "RUST_IMAGE=$BUILDER" --build-arg "RUNTIME_IMAGE=$RUNTIME_BASE"
    --build-arg "CARGO_PROFILE=$PROFILE")
# The build stage is tagged too, so that cleaning up removes it (the classic builder keeps
# every stage as an image); the second build finds it all in the cache.
log "docker build -t $IMAGE . (RUST_IMAGE=$BUILDER RUNTIME_IMAGE=$RUNTIME_BASE CARGO_PROFILE=$PROFILE)"
docker build --force-rm "${build_args[@]}" --target build -t "$BUILD_STAGE_IMAGE" . >"$TMP/build.log" 2>&1 ||
    { tail -40 "$TMP/build.log" >&2; fail "docker build failed"; }
docker build --force-rm "${build_args[@]}" -t "$IMAGE" . >>"$TMP/build.log" 2>&1 ||
    { tail -40 "$TMP/build.log" >&2; fail "docker build failed"; }
figure "image built (profile $PROFILE) in $(since "$started") s"
size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(docker image inspect --format '{{.Size}}' "$RUNTIME_BASE")
figure "image size $((size / 1000000)) MB ($(((size - base_size) / 1000000)) MB over the $((base_size / 1000000)) MB base)"

user=$(docker image inspect --format '{{.Config.User}}' "$IMAGE")
[[ $user == 10001:10001 ]] || fail "the image runs as '$user', not 10001:10001"
ports=$(docker image inspect --format '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}' "$IMAGE")
[[ $ports == *2428/udp* && $ports == *8428/tcp* ]] || fail "the image exposes '$ports'"

# ---------------------------------------------------------------------------------------------
# One container: /health through the published port, HEALTHCHECK, user.

log "docker run $IMAGE (one node, HTTP published on an ephemeral port of 127.0.0.1)"
docker run -d --init --name "$SINGLE" -p 127.0.0.1::8428 "$IMAGE" --node-name single >/dev/null
single_port=$(docker port "$SINGLE" 8428/tcp | head -1)
single_port=${single_port##*:}
deadline=$((SECONDS + HEALTH_DEADLINE))
until [[ $(docker inspect --format '{{.State.Health.Status}}' "$SINGLE") == healthy ]]; do
    [[ $(docker inspect --format '{{.State.Running}}' "$SINGLE") == true ]] ||
        fail "the container stopped: $(docker logs --tail 20 "$SINGLE" 2>&1)"
    ((SECONDS < deadline)) || fail "not healthy within ${HEALTH_DEADLINE}s: $(docker inspect --format '{{json .State.Health}}' "$SINGLE")"
    sleep 1
done
http_get "http://127.0.0.1:$single_port/health"
grep -q '"status":"ok"' "$TMP/body" || fail "/health through the port answered $(cat "$TMP/body")"
[[ $(cat "$TMP/status") == 200 ]] || fail "/health answered $(cat "$TMP/status")"
uid=$(docker exec "$SINGLE" id -u)
[[ $uid == 10001 ]] || fail "chatterd runs as uid $uid"
pid1_uid=$(docker exec "$SINGLE" sh -c 'for p in /proc/[0-9]*; do [ "$(cat $p/comm)" = chatterd ] && awk "/^Uid:/{print \$2}" $p/status; done' | head -1)
[[ $pid1_uid == 10001 ]] || fail "the chatterd process has uid '$pid1_uid'"
log "single container: healthy, /health 200 on 127.0.0.1:$single_port, chatterd runs as uid $uid"
docker rm -f "$SINGLE" >/dev/null

# ---------------------------------------------------------------------------------------------
# 3. The compose cluster.

gossip_key=$(docker run --rm --entrypoint chatter "$IMAGE" keygen)
http_token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export CHATTER_IMAGE=$IMAGE CHATTER_DASHBOARD_PORT=0 CHATTER_GOSSIP_KEY=$gossip_key \
    CHATTERD_HTTP_TOKEN=$http_token
log "${COMPOSE[*]} -p $PROJECT -f $COMPOSE_FILE up -d (5 nodes, key and token set)"
started=$(now)
CLUSTER_UP=1
compose up -d --no-build >"$TMP/compose.log" 2>&1 || { cat "$TMP/compose.log" >&2; fail "compose up failed"; }
port=$(compose port chatter-1 8428 | head -1)
port=${port##*:}
[[ $port =~ ^[0-9]+$ ]] || fail "no published port for chatter-1's dashboard"
api=http://127.0.0.1:$port

alive_count() {
    python3 -c '
import json, sys
try:
    members = json.load(open(sys.argv[1]))["members"]
except Exception:
    print(0); sys.exit()
print(sum(1 for m in members if m["status"] == sys.argv[2]))' "$TMP/body" "${1:-alive}"
}
deadline=$((SECONDS + CONVERGE_DEADLINE))
while :; do
    http_get "$api/v1/members"
    [[ $(alive_count) == 5 ]] && break
    ((SECONDS < deadline)) || fail "chatter-1 does not list 5 alive members within ${CONVERGE_DEADLINE}s: $(cat "$TMP/body")"
    sleep 0.2
done
figure "compose cluster: 5 alive members on chatter-1 $(since "$started") s after \`up\`"

http_get "$api/health"
[[ $(cat "$TMP/status") == 200 ]] || fail "chatter-1's /health answered $(cat "$TMP/status")"
http_get "$api/v1/self"
python3 -c '
import json, sys
me = json.load(open(sys.argv[1]))
mode = me["encryption"]["mode"]
assert mode == "sealed", f"encryption mode {mode}, not sealed"' "$TMP/body" ||
    fail "the gossip key is not in force: $(cat "$TMP/body")"
http_request PUT "$api/v1/kv/ci-check" "" "written-by-ci"
[[ $(cat "$TMP/status") == 401 ]] || fail "a write without the token answered $(cat "$TMP/status")"
http_request PUT "$api/v1/kv/ci-check" "$http_token" "written-by-ci"
[[ $(cat "$TMP/status") == 200 ]] || fail "a write with the token answered $(cat "$TMP/status"): $(cat "$TMP/body")"
deadline=$((SECONDS + CONVERGE_DEADLINE))
until [[ $(compose exec -T chatter-5 chatter kv get chatter-1 ci-check 2>/dev/null) == written-by-ci ]]; do
    ((SECONDS < deadline)) || fail "chatter-5 never read chatter-1's key through its CLI"
    sleep 0.2
done
log "key and token in force; chatter-1's key/value read on chatter-5 with the image's CLI"

# Faults made with Docker itself, watched from chatter-1: a frozen container (`docker pause`,
# the cgroup freezer: the process stops, its kernel stays up) must never be failed; a container
# taken off the network (`docker network disconnect`: to the others a host that is gone) must be
# failed, and listed alive again after it is put back.

# `status_of NAME`: NAME's status in chatter-1's member list ("absent" when it is not listed).
status_of() {
    http_get "$api/v1/members"
    python3 -c '
import json, sys
try:
    members = json.load(open(sys.argv[1]))["members"]
except Exception:
    print("unreadable"); sys.exit()
print(next((m["status"] for m in members if m["name"] == sys.argv[2]), "absent"))' "$TMP/body" "$1"
}
# `elapsed_below START SECONDS`: whether less than SECONDS have passed since START (from `now`).
elapsed_below() {
    python3 -c "import sys, time; sys.exit(0 if time.time() - float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$1" "$2"
}
# `wait_status NAME STATUS DEADLINE WHAT`: polls until NAME is STATUS; fails after DEADLINE s.
wait_status() {
    local deadline=$((SECONDS + $3))
    until [[ $(status_of "$1") == "$2" ]]; do
        ((SECONDS < deadline)) || fail "$4: $1 is not $2 on chatter-1 within $3 s: $(cat "$TMP/body")"
        sleep 0.2
    done
}

paused=$(compose ps -q chatter-4)
[[ -n $paused ]] || fail "no container for chatter-4"
log "docker pause chatter-4 for ${PAUSE_SECONDS} s (a frozen container must not be failed)"
docker pause "$paused" >/dev/null
started=$(now)
unpaused=0
worst=alive
# Watched for 3 s after the unpause too: a verdict reached during the pause spreads by then.
while elapsed_below "$started" $((PAUSE_SECONDS + 3)); do
    status=$(status_of chatter-4)
    if [[ $status == failed ]]; then
        ((unpaused)) || docker unpause "$paused" >/dev/null 2>&1
        fail "chatter-4, frozen for ${PAUSE_SECONDS} s, was declared failed"
    fi
    [[ $status == suspect ]] && worst=suspect
    if ((!unpaused)) && ! elapsed_below "$started" "$PAUSE_SECONDS"; then
        docker unpause "$paused" >/dev/null
        unpaused=1
    fi
    sleep 0.2
done
((unpaused)) || docker unpause "$paused" >/dev/null
wait_status chatter-4 alive 20 "after docker unpause"
figure "frozen container: chatter-4 paused ${PAUSE_SECONDS} s, never failed on chatter-1 (at worst $worst)"

cut=$(compose ps -q chatter-3)
[[ -n $cut ]] || fail "no container for chatter-3"
network=$(docker inspect --format '{{range $k, $_ := .NetworkSettings.Networks}}{{$k}} {{end}}' "$cut")
network=${network%% *}
[[ -n $network ]] || fail "chatter-3 is on no network"
log "docker network disconnect $network chatter-3 (a host that is gone)"
started=$(now)
docker network disconnect "$network" "$cut"
wait_status chatter-3 failed "$CUT_DEADLINE" "after the disconnect"
figure "container off the network: chatter-3 failed on chatter-1 $(since "$started") s after the disconnect"
started=$(now)
docker network connect --alias chatter-3 "$network" "$cut"
wait_status chatter-3 alive "$CUT_DEADLINE" "after the reconnect"
figure "container back on the network: chatter-3 alive on chatter-1 $(since "$started") s after the reconnect"

started=$(now)
compose stop -t 10 chatter-5 >/dev/null 2>&1 &
stopper=$!
deadline=$((SECONDS + LEAVE_DEADLINE))
while :; do
    http_get "$api/v1/members"
    [[ $(alive_count left) == 1 && $(alive_count failed) == 0 ]] && break
    ((SECONDS < deadline)) || fail "chatter-5's stop was not seen as a leave: $(cat "$TMP/body")"
    sleep 0.1
done
figure "\`stop chatter-5\`: listed left (not failed) on chatter-1 after $(since "$started") s"
wait "$stopper" || fail "compose stop chatter-5 failed"

# ---------------------------------------------------------------------------------------------
# 4. The multi-host suite on the image: `chatter-bench hosts --containers`, one container of the
#    image per host (the image's chatterd, run inside it), each container's network namespace
#    linked to a switch of the harness's own, faults made in that switch and to the processes.
#    Needs root and `ip netns`; CHATTER_DOCKER_HOSTS_TEST=0 skips it.

compose down -v --remove-orphans >/dev/null 2>&1
CLUSTER_UP=""
if [[ ${CHATTER_DOCKER_HOSTS_TEST:-1} == 0 ]]; then
    log "SKIPPED the hosts suite on the image: CHATTER_DOCKER_HOSTS_TEST=0"
elif [[ $(id -u) != 0 ]] || ! ip netns list >/dev/null 2>&1; then
    log "SKIPPED the hosts suite on the image: needs root and a working 'ip netns'"
else
    missing=()
    command -v nft >/dev/null 2>&1 || missing+=(nftables)
    command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
    apt_install "${missing[@]}"
    TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
    log "cargo build --release -p chatter-bench"
    cargo build --release -p chatter-bench
    BENCH=$TARGET_DIR/release/chatter-bench
    log "hosts suite on containers of $IMAGE: silent host loss, crash, 5 s pause, rolling restart (Chatter, --check)"
    started=$(now)
    "$BENCH" hosts --containers "$IMAGE" --systems chatter --nodes 5 --runs 1 \
        --scenarios silent,crash,pause,restart --pauses 5 --check >"$TMP/hosts.log" 2>&1 &
    HOSTS_HARNESS=$!
    rc=0
    wait "$HOSTS_HARNESS" || rc=$?
    HOSTS_HARNESS=""
    # Its outline (no line at all when it failed at once: the tail below shows why).
    { grep -E '^ {2}[a-z]|^(Chatter|removed)' "$TMP/hosts.log" || true; } | sed 's/^/docker-test: hosts: /'
    ((rc == 0)) || { tail -40 "$TMP/hosts.log" >&2; fail "the hosts suite on containers of $IMAGE failed (exit $rc)"; }
    figure "hosts suite on 5 containers of the image: passed in $(since "$started") s"
fi

log "all checks passed"
for f in "${FIGURES[@]}"; do echo "docker-test: figure: $f"; done
