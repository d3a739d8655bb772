# The tracker image: the `tracker` command (API server, RQ worker, CLI) and nothing else.
#   docker build -t tracker .
# Jobs that a `tracker worker` runs must be importable in its image: build your own
# image FROM this one, adding your code, or install tracker into your app's image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY tracker ./tracker
RUN pip install -c constraints.txt . && rm -rf /src

RUN useradd --create-home --uid 1000 tracker
USER tracker
WORKDIR /home/tracker

EXPOSE 8000
# Without TRACKER_REDIS_URL, `tracker serve` would start an embedded Valkey inside the
# container (data lost with it); docker-compose.yml points it at a Redis service.
CMD ["tracker", "serve", "--host", "0.0.0.0", "--port", "8000"]
