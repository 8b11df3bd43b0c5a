# syntax=docker/dockerfile:1
#
# fboc: Kafka -> Meta Conversions API consumer.
#
#   docker build -t fboc .
#   docker run --rm -v "$PWD/fboc.yaml:/etc/fboc/fboc.yaml:ro" -e FB_ACCESS_TOKEN fboc
#   docker run --rm fboc check-config --config /etc/fboc/fboc.yaml
#
# Two stages. The build stage runs the same Python on the full Debian image, which has a C compiler:
# it installs the pinned dependencies (wheels only) into a virtualenv and builds fboc's wheel with
# FBOC_COMPILE=1, so that the transform is compiled by mypyc (hatch_build.py, README "Performance").
# The final stage, on the slim image of the same Python, copies only that virtualenv, runs as an
# unprivileged user and has no build tools, no pip and no source tree.

ARG PYTHON_VERSION=3.11
ARG PYTHON_IMAGE=python:${PYTHON_VERSION}-slim-bookworm
ARG BUILD_IMAGE=python:${PYTHON_VERSION}-bookworm

FROM ${BUILD_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock files change.
COPY deploy/requirements.txt deploy/requirements-build.txt deploy/
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --only-binary=:all: -r deploy/requirements-build.txt -r deploy/requirements.txt \
 && python -m venv /opt/fboc \
 && /opt/fboc/bin/pip install --only-binary=:all: --no-deps -r deploy/requirements.txt
COPY pyproject.toml README.md hatch_build.py ./
COPY consumer/ consumer/
RUN FBOC_COMPILE=1 /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
 && /opt/fboc/bin/pip install --no-deps /tmp/dist/fboc-*.whl \
 && /opt/fboc/bin/pip check \
 && /opt/fboc/bin/python -m pip uninstall --yes pip \
 && /opt/fboc/bin/python -c "import consumer.core.capi.normalize as m; assert m.__file__.endswith('.so'), m.__file__" \
 && /opt/fboc/bin/fboc --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.version="0.1.0"
ENV PATH=/opt/fboc/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1
RUN groupadd --system --gid 10001 fboc \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin fboc
COPY --from=build /opt/fboc /opt/fboc
COPY deploy/healthcheck.py /opt/fboc/healthcheck.py
# Relative `schema:` paths of registry-less sources (schemas/<dialect>.avsc) resolve from /app.
WORKDIR /app
COPY schemas/ schemas/
USER 10001:10001
# service.port: /healthz, /readyz, /metrics.
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/opt/fboc/healthcheck.py"]
ENTRYPOINT ["fboc"]
CMD ["run", "--config", "/etc/fboc/fboc.yaml"]
