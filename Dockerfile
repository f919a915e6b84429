# exitd from this repository, installed as the README installs it (`pip install .`), run as a non-root user.
# Used by docker-compose.yml; on its own:
#   docker build -t exitd . && docker run -v exitd-data:/data -p 127.0.0.1:3000:3000 \
#     -e EXITD_BITCOIND_RPC_URL=... exitd
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install . && rm -rf /src

RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin exitd \
    && mkdir -p /data && chown exitd:exitd /data && chmod 0700 /data
USER exitd
WORKDIR /data

# Inside a container the REST API must listen on all interfaces; publish it on 127.0.0.1 only.
ENV EXITD_DATADIR=/data \
    EXITD_REST_HOST=0.0.0.0 \
    EXITD_REST_PORT=3000
VOLUME ["/data"]
EXPOSE 3000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['EXITD_REST_PORT'] + '/ping', timeout=4)"]

# `exitd init` creates only what the datadir lacks (a new wallet on first start), then the daemon runs.
CMD ["sh", "-c", "exitd init && exec exitd run"]
