# hookflow in a container: a release build on Debian, run as an unprivileged user.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin hookflow

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/hookflow --create-home hookflow
COPY --from=build /src/target/release/hookflow /usr/local/bin/hookflow
USER hookflow
WORKDIR /var/lib/hookflow
ENV HOOKFLOW_LISTEN=0.0.0.0:13000 \
    HOOKFLOW_WORKFLOWS=/etc/hookflow/workflows \
    HOOKFLOW_DATA=/var/lib/hookflow/data
EXPOSE 13000
ENTRYPOINT ["hookflow"]
CMD ["serve"]
