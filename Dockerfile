# Multi-stage build of the inferwatch processor.
FROM rust:1.95-bookworm AS build
# OpenSSL headers: the Kafka client's TLS and SASL (SCRAM) are built against them.
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --bin inferwatch

FROM debian:bookworm-slim
# libssl3 for the Kafka client; CA certificates for TLS to managed Kafka and S3.
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/inferwatch inferwatch \
    && mkdir -p /var/lib/inferwatch && chown inferwatch /var/lib/inferwatch
COPY --from=build /src/target/release/inferwatch /usr/local/bin/inferwatch
USER inferwatch
WORKDIR /var/lib/inferwatch
ENTRYPOINT ["inferwatch"]
CMD ["run", "--brokers", "kafka:9092", "--data-dir", "/var/lib/inferwatch/data"]
