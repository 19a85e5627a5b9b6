# The berth binary in a minimal image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin berth

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/berth /usr/local/bin/berth
USER nonroot
ENTRYPOINT ["/usr/local/bin/berth"]
