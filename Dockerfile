# dfsring node image (issue 22). Build: docker build -t dfsring:dev .
# Every node option is a DFSRING_<OPTION> variable (python -m dfsring.node --help); the
# secrets (DFSRING_CLUSTER_SECRET, DFSRING_ADMIN_ACCESS_KEY, DFSRING_ADMIN_SECRET_KEY) are
# never baked in: Compose reads them from .env, Kubernetes from a Secret.
# tests/cluster/test_image_entrypoint.py runs this file's ENTRYPOINT with its ENV as a plain
# process (Docker is not needed for that), so what is written here is what is tested.

# --- build: a wheel of dfsring and of every dependency, so the runtime stage needs no compiler
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dfsring ./dfsring
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: slim, non-root, data on a volume
FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="dfsring" \
      org.opencontainers.image.description="leaderless replicated key/value, file and S3 store" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 dfsring \
    && useradd --system --uid 10001 --gid dfsring --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin dfsring \
    && mkdir /data \
    && chown dfsring:dfsring /data
COPY --from=build /wheels /wheels
# The versions are pinned by the wheels the build stage made (no index is consulted).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-index --find-links=/wheels dfsring \
    && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DFSRING_DATA_DIR=/data \
    DFSRING_HOST=0.0.0.0 \
    DFSRING_PORT=7070 \
    DFSRING_PEER_PORT=7170 \
    DFSRING_S3_PORT=9000 \
    DFSRING_LOG_JSON=true
VOLUME ["/data"]
# 7070 client API (/health, /metrics, /v1), 7170 node-to-node, 9000 S3
EXPOSE 7070 7170 9000
USER 10001:10001
WORKDIR /data
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "dfsring.cli.healthcheck"]
# Listening on 0.0.0.0 needs DFSRING_ADVERTISE (HOST:7170, what peers dial) and
# DFSRING_ADVERTISE_API (HOST:7070, what clients dial): the node refuses to start without them.
ENTRYPOINT ["python", "-m", "dfsring.node"]
