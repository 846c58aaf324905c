# grenier image: `grenier serve` by default; the compose file runs `grenier worker` from the same image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in a layer of their own: the exact versions of requirements.lock, rebuilt only when it changes.
COPY requirements.lock ./
RUN pip install -r requirements.lock \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin grenier

# Then the four packages, without resolving anything again; only what `pip install .` needs is copied.
COPY pyproject.toml README.md ./
COPY core ./core
COPY proxy ./proxy
COPY jobs ./jobs
COPY grenier ./grenier
RUN pip install --no-deps . && rm -rf build *.egg-info

# Defaults for every key; override any of them with GRENIER_<SECTION>_<KEY> (e.g. GRENIER_REDIS_URL).
COPY config.toml ./

USER grenier
EXPOSE 8080

# Ready means the store and the job broker answer (503 otherwise, which urlopen raises on). For `grenier serve`; a
# container running `grenier worker` opens no port and uses `grenier worker --check` instead (docker-compose.yml).
# On `docker stop`, give grenier serve more than cache.max_wait (30 s) to finish its requests: --stop-timeout 40.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/_grenier/ready', timeout=3)"]

CMD ["grenier", "serve", "--host", "0.0.0.0"]
