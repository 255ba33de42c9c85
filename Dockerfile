# nexusd container image: multi-stage on Debian 12 (bookworm).
#
# The build stage runs the same scripts as CI (scripts/install-deps.sh, scripts/build.sh). The runtime stage
# carries only the shared libraries nexusd links, PostgreSQL 15 server binaries (for the embedded mode used
# when no --database-url / NEXUS_DATABASE_URL is given) and curl for the HEALTHCHECK.
#
# No Docker engine runs on the development machine: scripts/container-check.sh performs these steps on the
# host (same scripts, non-root user, same flags, same health check) and CI runs it. `docker build` itself has
# not been run against this file; see docs/OPERATIONS.md.
#
#   docker build -t nexusd:latest .          (the tag deploy/docker-compose.yml and deploy/kubernetes use)
#   docker run -p 50051:50051 -p 8080:8080 -v nexus-data:/var/lib/nexusd nexusd:latest
#   docker run -e NEXUS_DATABASE_URL='postgresql://nexus:...@db:5432/nexus' -e NEXUS_EMBEDDED_POSTGRES=off nexusd:latest
#
# Configuration is by NEXUS_* environment variables only (the ENTRYPOINT passes no flags, since flags would
# win over a Kubernetes ConfigMap). The user has a fixed uid/gid (10001) that the manifests' runAsUser name.

FROM debian:12 AS build
WORKDIR /src
# Dependencies first (own layer, cached until the script changes).
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
# Release, the server and its CLI (tests and benchmarks are CI's job, not the image's).
RUN BUILD_DIR=/src/build-image BUILD_TYPE=Release NEXUS_BUILD_TESTS=OFF NEXUS_BUILD_BENCH=OFF \
      scripts/build.sh nexusd nexusctl \
 && strip --strip-unneeded /src/build-image/server/nexusd /src/build-image/tools/nexusctl/nexusctl \
 && /src/build-image/server/nexusd --help >/dev/null \
 && /src/build-image/tools/nexusctl/nexusctl --help >/dev/null

FROM debian:12-slim AS runtime
# Runtime libraries of nexusd (`ldd nexusd` on bookworm; libphonenumber8 + ICU for phone numbers), PostgreSQL 15
# for the embedded mode, curl.
RUN apt-get update \
 && printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && mkdir -p /etc/postgresql-common \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 libre2-9 libc-ares2 libssl3 zlib1g \
      libpqxx-6.4 libpq5 libprometheus-cpp-core1.0 libphonenumber8 libicu72 \
      postgresql-15 curl ca-certificates \
 && rm -f /usr/sbin/policy-rc.d \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 nexus \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/nexusd --shell /usr/sbin/nologin nexus \
 && mkdir -p /var/lib/nexusd \
 && chown nexus:nexus /var/lib/nexusd
COPY --from=build /src/build-image/server/nexusd /usr/local/bin/nexusd
COPY --from=build /src/build-image/tools/nexusctl/nexusctl /usr/local/bin/nexusctl
USER nexus
WORKDIR /var/lib/nexusd
VOLUME ["/var/lib/nexusd"]
EXPOSE 50051 8080
ENV NEXUS_LOG_LEVEL=info \
    NEXUS_GRPC_LISTEN=0.0.0.0:50051 \
    NEXUS_HTTP_LISTEN=0.0.0.0:8080 \
    NEXUS_DATA_DIR=/var/lib/nexusd
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/readyz || curl -fsSk https://127.0.0.1:8080/readyz || exit 1
# SIGTERM (docker stop) drains in-flight RPCs for --shutdown-grace and stops the embedded PostgreSQL:
# give `docker stop -t` more than that grace.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/nexusd"]
