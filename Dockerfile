FROM python:3.11-slim

# The same data directory as deploy/kubernetes mounts (SQLite, the local runner's runs).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 EXPBOT_DATA_DIR=/var/lib/expbot
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY adapters ./adapters
COPY bot ./bot
COPY migrations ./migrations
COPY examples ./examples
# Numeric user and group, matching the Deployment's runAsUser/runAsGroup: runAsNonRoot can check it.
RUN pip install --no-cache-dir . \
    && groupadd --gid 10001 expbot \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin expbot \
    && mkdir -p /var/lib/expbot && chown 10001:10001 /var/lib/expbot

USER 10001:10001
VOLUME ["/var/lib/expbot"]
# Slack's HTTP events and the /report endpoint for training pods.
EXPOSE 3000
ENTRYPOINT ["expbot"]
CMD ["serve"]
