# grenier image: `grenier serve` by default; the compose file runs `grenier worker` from the same image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies and the four packages; only what `pip install .` needs is copied.
COPY pyproject.toml README.md ./
COPY core ./core
COPY proxy ./proxy
COPY jobs ./jobs
COPY grenier ./grenier
RUN pip install . \
    && rm -rf build *.egg-info \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin grenier

# Defaults for every key; override any of them with GRENIER_<SECTION>_<KEY> (e.g. GRENIER_REDIS_URL).
COPY config.toml ./

USER grenier
EXPOSE 8080

# Ready means the store and the job broker answer (503 otherwise, which urlopen raises on).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/_grenier/ready', timeout=3)"]

CMD ["grenier", "serve", "--host", "0.0.0.0"]
