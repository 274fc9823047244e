# The flusher as a container: `serve` (schedule + /health + /metrics) by default, or a Prefect worker's flow runs.
#   docker build -t postgres-ducklake-flusher .
#   docker run -v $PWD/config.yaml:/etc/flusher/config.yaml:ro -e PREFECT_API_URL=... -p 8089:8089 postgres-ducklake-flusher
# Dependencies are the locked versions (requirements.lock as constraints, only what pyproject.toml requires at run
# time); DuckDB's extensions come from their PyPI wheels, so the image never downloads one at run time.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/flusher
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY flusher flusher
COPY app app
COPY flows flows
COPY tasks tasks
COPY blocks blocks
COPY schema schema
RUN /opt/flusher/bin/pip install --constraint requirements.lock .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /home/flusher flusher
COPY --from=build /opt/flusher /opt/flusher
WORKDIR /app
# What `serve` and `alerts` read by default (prefect.yaml's schedule, the automations), and a config example.
COPY prefect.yaml config.yaml.example ./
COPY automations automations
ENV PATH=/opt/flusher/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PREFECT_HOME=/home/flusher/.prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    FLUSHER_CONFIG=/etc/flusher/config.yaml
USER 10001
# /health and /metrics (service.health_port). The container's probes reach it from outside the container, so the
# health server must listen on every interface in here: the image sets it (README "Security").
ENV FLUSHER_SERVICE_HEALTH_HOST=0.0.0.0
EXPOSE 8089
# As the Go service's image: unhealthy when /health answers 503 or not at all (python: the slim image has no curl).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('FLUSHER_SERVICE_HEALTH_PORT', '8089'), timeout=4)"]
ENTRYPOINT ["postgres-ducklake-flusher"]
CMD ["serve"]
