# syntax=docker/dockerfile:1
# paycenter: one image for every role. The command picks it:
#   docker run IMAGE api --workers 2 --host 0.0.0.0    (the default)
#   docker run IMAGE worker
#   docker run IMAGE migrate | config check | merchant create NAME | ...
# Settings come from PAYCENTER_* environment variables (see deploy/paycenter.env.example).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the package and its dependencies in a virtualenv, no dev or test extras ---------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Every dependency ships a wheel for x86_64 and arm64 Linux on CPython 3.11; on another platform
# add `apt-get install -y build-essential` here.
RUN python -m venv /opt/paycenter
# The locked versions, checked against their hashes (requirements.lock, `make lock`); then the
# package itself without resolving anything again. tzdata (the IANA zones: cleanup runs in
# Asia/Almaty) is one of the locked dependencies, whatever the base image carries.
COPY requirements.lock ./
RUN /opt/paycenter/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/paycenter/bin/pip install --no-deps . \
 && /opt/paycenter/bin/paycenter --help >/dev/null

# --- run -------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="paycenter" \
      org.opencontainers.image.description="Self-hosted payment center: merchant API, hosted payment page, Kaspi, signed webhooks" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 paycenter \
 && useradd --system --uid 10001 --gid paycenter --home-dir /var/lib/paycenter --create-home \
            --shell /usr/sbin/nologin paycenter
COPY --from=build /opt/paycenter /opt/paycenter
ENV PATH=/opt/paycenter/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PAYCENTER_HOST=0.0.0.0 \
    PAYCENTER_PORT=8000
# No .env is read from here unless one is mounted; SQLite (if used) lives here, on a volume.
WORKDIR /var/lib/paycenter
USER 10001:10001
EXPOSE 8000
# Liveness of the API process. Images running `worker` or `migrate` turn it off (see compose.yaml).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PAYCENTER_PORT', '8000'), timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["paycenter"]
CMD ["api", "--workers", "2", "--host", "0.0.0.0"]
