# agora in a container: build with Rust, run on a slim Debian as a non-root user.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin agora

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data agora \
 && mkdir /data && chown agora /data
COPY --from=build /src/target/release/agora /usr/local/bin/agora
USER agora
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["agora"]
CMD ["serve", "--http", "0.0.0.0:8080", "--data", "/data"]
