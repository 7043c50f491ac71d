FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 EXPBOT_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY adapters ./adapters
COPY bot ./bot
COPY migrations ./migrations
COPY examples ./examples
RUN pip install --no-cache-dir . \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin expbot \
    && mkdir -p /data && chown expbot /data

USER 10001
VOLUME ["/data"]
ENTRYPOINT ["expbot"]
CMD ["serve"]
