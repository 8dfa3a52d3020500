# syntax=docker/dockerfile:1
# Multi-stage build: a cached dependency layer (cargo-chef), a release build, and a small
# non-root runtime image whose embedded SQLite database lives on a volume.

FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version ^0.1
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
# Dependencies only: this layer is reused until Cargo.toml / Cargo.lock change.
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin eagerql

# The runtime image without its binary. COPY makes files root's whatever USER says: the
# binary (mode 0755) is not writable by eagerql.
FROM debian:bookworm-slim AS runtime-base
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home eagerql
USER eagerql
WORKDIR /data
VOLUME ["/data"]
ENV DATABASE_URL=sqlite:/data/eagerql.db \
    EAGERQL_BIND=0.0.0.0:8000 \
    EAGERQL_LOG_FORMAT=json
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["/usr/local/bin/eagerql", "health"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/eagerql"]
CMD ["serve"]

# The same image around a binary built elsewhere: `--target prebuilt` with a build context
# holding only `eagerql` (scripts/container-check).
FROM runtime-base AS prebuilt
COPY --chmod=0755 eagerql /usr/local/bin/eagerql

# The production image (the last stage, built by default).
FROM runtime-base AS runtime
COPY --chmod=0755 --from=builder /app/target/release/eagerql /usr/local/bin/eagerql
