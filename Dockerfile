# Multi-stage build of the inferwatch processor.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin inferwatch

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/inferwatch inferwatch \
    && mkdir -p /var/lib/inferwatch && chown inferwatch /var/lib/inferwatch
COPY --from=build /src/target/release/inferwatch /usr/local/bin/inferwatch
USER inferwatch
WORKDIR /var/lib/inferwatch
ENTRYPOINT ["inferwatch"]
CMD ["run", "--brokers", "kafka:9092", "--data-dir", "/var/lib/inferwatch/data"]
