# chatterd and the `chatter` CLI on a small Debian runtime, as a non-root user.
#
#   docker build -t chatter .
#   docker run -d --init --name chatter-1 -p 127.0.0.1:8428:8428 chatter
#   docker run -d --init --name chatter-2 chatter --seed chatter-1:2428   # on a shared network
#
# Ports: gossip 2428/udp (SWIM probes and dissemination between nodes), HTTP API and dashboard
# 8428/tcp. The image runs `chatterd --config /etc/chatter/chatterd.toml` (both ports on every
# interface of the container) and appends the arguments of `docker run`, which override the
# file. The gossip key goes in the CHATTER_GOSSIP_KEY environment variable (never an argument),
# an HTTP token in CHATTERD_HTTP_TOKEN. See docs/DEPLOY.md.
#
# Two stages: the workspace is compiled in a Rust image, and only the two binaries are copied
# into a slim Debian of the same release (same glibc). The base images are build arguments so
# that a machine without a registry builds this same file from images it made itself
# (.ci/docker-test.sh passes images made with debootstrap and `docker import`); only the
# arguments differ, never the file. Works with the classic builder and with BuildKit.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The workspace and nothing else, so that editing the docs or deploy/ does not recompile.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# The cargo profile: `release`, what the project ships. CI passes `ci-image` (Cargo.toml says
# why); any profile but `dev` and `test`, whose output directory is named otherwise, works.
ARG CARGO_PROFILE=release
# The daemon on its own, then the CLI: built together, cargo would unify their dependencies'
# features into one build and link into chatterd what only the CLI needs (see Cargo.toml). The
# second build reuses every dependency the first one compiled with the same features.
# `--locked`: exactly the dependency versions of Cargo.lock, as CI tests them. The debug line
# tables of the release profile (40 of the binaries' 50 MB) are stripped: they serve profilers
# and backtraces on a developer's machine; a panic's message and location survive without them.
RUN cargo build --profile "$CARGO_PROFILE" --locked -p chatterd \
 && cargo build --profile "$CARGO_PROFILE" --locked -p chatter-cli --bin chatter \
 && mkdir -p /out \
 && cp "target/$CARGO_PROFILE/chatterd" "target/$CARGO_PROFILE/chatter" /out/ \
 && strip --strip-debug /out/chatterd /out/chatter

FROM ${RUNTIME_IMAGE}
# A fixed numeric user and group (10001), so that Kubernetes' `runAsNonRoot` can check it and
# volumes can be prepared for it. /var/lib/chatter is its home and working directory, for state
# kept across restarts.
RUN groupadd --system --gid 10001 chatter \
 && useradd --system --uid 10001 --gid chatter --home-dir /var/lib/chatter --no-create-home \
      --shell /usr/sbin/nologin chatter \
 && install -d -o chatter -g chatter -m 0750 /var/lib/chatter
COPY --from=build /out/chatterd /out/chatter /usr/local/bin/
COPY deploy/docker/chatterd.toml /etc/chatter/chatterd.toml
USER 10001:10001
WORKDIR /var/lib/chatter
# The data dir of deploy/docker/chatterd.toml: the node's state across container restarts.
VOLUME /var/lib/chatter
EXPOSE 2428/udp 8428/tcp
# `chatter health` asks GET /health on 127.0.0.1:8428 (CHATTER_HTTP overrides it): exit 0 while
# the daemon answers `ok`, 1 when it is unreachable or leaving (503).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["chatter", "health"]
ENTRYPOINT ["chatterd", "--config", "/etc/chatter/chatterd.toml"]
