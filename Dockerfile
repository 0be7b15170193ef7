# syntax=docker/dockerfile:1
# The Ash server image: `docker build -t ash .`, run with the flags in docs/self-hosting/docker.md (or `ash start
# --docker`, or docker-compose.yml). Two stages: the build stage resolves the pinned dependencies into a virtualenv;
# the runtime stage is Debian with only what sandboxes need (bubblewrap, util-linux's setpriv) and tini.
#
# Users (docs/decisions/0008-non-root-server.md): the entrypoint starts as root only to delegate the container's
# cgroup, then runs the server as the non-root `ash` user (uid 10000) holding six ambient capabilities (the same set
# as systemd/ash.service); the server switches every sandbox to the separate, unprivileged `ash-sandbox` uid (10001)
# with setpriv and leaves it no capability.

ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
# The virtualenv is built on Debian's /usr/bin/python3, the interpreter of the runtime stage: sandboxes run it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY server ./server
COPY bridge ./bridge
COPY cli ./cli
# requirements.lock pins every package, dev and infra tools included; as constraints it pins the versions of what
# the server needs without installing the rest.
RUN python3 -m venv /opt/ash/venv \
 && /opt/ash/venv/bin/pip install --no-cache-dir --disable-pip-version-check uv==0.13.9 \
 && VIRTUAL_ENV=/opt/ash/venv /opt/ash/venv/bin/uv pip install --no-cache --compile-bytecode -c requirements.lock \
      ".[postgres,s3,gcs]" \
 && /opt/ash/venv/bin/uv pip uninstall --python /opt/ash/venv/bin/python uv \
 && chmod -R a+rX /opt/ash/venv

FROM ${DEBIAN_IMAGE}
LABEL org.opencontainers.image.title="Ash" \
      org.opencontainers.image.description="Deploys Claude agents and runs each session in a bubblewrap sandbox." \
      org.opencontainers.image.licenses="MIT"
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 bubblewrap util-linux tini ca-certificates postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10000 ash \
 && useradd --system --uid 10000 --gid 10000 --no-create-home --home-dir /data --shell /usr/sbin/nologin ash \
 && groupadd --system --gid 10001 ash-sandbox \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin ash-sandbox \
 && install -d -o ash -g ash -m 0711 /data
COPY --from=build /opt/ash/venv /opt/ash/venv
COPY docker/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh

# In a container the server must listen on every interface to be published; the host decides what is exposed
# (`-p 127.0.0.1:4100:4100`, a load balancer).
ENV PATH=/opt/ash/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    ASH_HOST=0.0.0.0 \
    ASH_PORT=4100 \
    ASH_DATA_DIR=/data \
    ASH_SERVER_UID=10000 \
    ASH_SERVER_GID=10000 \
    ASH_SANDBOX_UID=10001 \
    ASH_SANDBOX_GID=10001
VOLUME ["/data"]
WORKDIR /data
EXPOSE 4100

HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/opt/ash/venv/bin/python", "-I", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ASH_PORT', '4100'), timeout=4)"]

# tini reaps orphans and forwards SIGTERM to the server, which stops its sandboxes (-s: also correct under
# `docker run --init`, where tini is not PID 1). No USER: the entrypoint needs root once, to delegate the cgroup,
# then drops to `ash` (ASH_SERVER_UID) itself; `docker run --user` skips both.
ENTRYPOINT ["/usr/bin/tini", "-s", "--", "/usr/local/bin/docker-entrypoint.sh"]
CMD ["ash", "serve"]
