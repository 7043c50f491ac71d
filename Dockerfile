# expbot's image: `expbot serve` as a non-root user (uid/gid 10001, as deploy/ runs it).
#
# Build it where a container engine runs (this repository's CI has none; it lints this file with
# hadolint instead, tests/unit/test_dockerfile.py):
#   docker build -t registry.example.com/ml/expbot:0.1.0 .      (podman, buildah, kaniko alike)
#
# The base image is pinned by digest, so a rebuild gets the same Python and Debian. To refresh it
# (security updates), look up the digest of the tag's multi-platform index and replace it below:
#   docker buildx imagetools inspect python:3.11-slim     (the "Digest:" line)
#   crane digest python:3.11-slim                          (the same, without a Docker daemon)
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# The same data directory as deploy/kubernetes mounts (SQLite, the local runner's runs).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 EXPBOT_DATA_DIR=/var/lib/expbot
WORKDIR /app

# Dependencies first, in a layer of their own: a change to expbot's source rebuilds only the layers
# below. requirements.lock pins every package with its hashes (`make lock` regenerates it from
# pyproject.toml); wheels only, so nothing is compiled in the image.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements.lock

COPY pyproject.toml README.md ./
COPY core ./core
COPY adapters ./adapters
COPY bot ./bot
COPY migrations ./migrations
COPY examples ./examples
# expbot itself, without resolving or fetching anything again: --no-deps, and built by the lock's own
# setuptools and wheel (--no-build-isolation); `pip check` fails the build when the lock misses a
# dependency. Numeric user and group, matching the Deployment's runAsUser/runAsGroup.
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && pip check \
    && groupadd --gid 10001 expbot \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin expbot \
    && mkdir -p /var/lib/expbot && chown 10001:10001 /var/lib/expbot

USER 10001:10001
VOLUME ["/var/lib/expbot"]
# Slack's HTTP events, the /report endpoint for training pods, and the probes.
EXPOSE 3000
ENTRYPOINT ["expbot"]
CMD ["serve"]
