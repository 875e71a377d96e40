# The PKDOT inference service (FastAPI + ONNX Runtime + MediaPipe; the `serve` extra only, never torch).
#
#   GPU (default): docker build -f docker/service.Dockerfile -t pkdot:gpu .
#   CPU:           docker build -f docker/service.Dockerfile -t pkdot:cpu \
#                      --build-arg BASE_IMAGE=python:3.11-slim-bookworm --build-arg ORT=cpu .
#
# Any Debian or Ubuntu 22.04 base works (docker/install-base.sh installs Python 3.11 where the base has none), so a
# locally made base (debootstrap + docker import) builds the same file where no registry can be reached.
# onnxruntime-gpu 1.31 is built for CUDA 13 and cuDNN 9: the GPU base must carry both (host driver >= 580).
# Build arguments (docs/docker.md): BASE_IMAGE, ORT (gpu | cpu), EXTRAS (serve; serve,cluster for the Ray Serve
# cluster image), EXTRA_CA_CERTS (PEM text), PIP_INDEX_URL, APP_UID; the standard HTTP_PROXY / HTTPS_PROXY / NO_PROXY build arguments reach apt and pip.
ARG BASE_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu22.04
ARG ORT=gpu
ARG EXTRAS=serve

# -- base: CA certificates, OpenCV/MediaPipe system libraries, Python 3.11, a non-root user -----------------------------
FROM ${BASE_IMAGE} AS base
ARG EXTRA_CA_CERTS=""
ARG APP_UID=1000
COPY docker/install-base.sh /tmp/install-base.sh
RUN bash /tmp/install-base.sh && rm /tmp/install-base.sh

# -- build: a virtual environment with the serve extra (and cluster, when EXTRAS says so), every version from constraints.txt -------------------------
FROM base AS build
ARG ORT
ARG EXTRAS
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120
WORKDIR /src
# dependencies first (one layer that changes only with pyproject.toml / constraints.txt); onnxruntime-gpu replaces
# onnxruntime in the requirement list itself, so the two are never installed together
COPY pyproject.toml constraints.txt ./
COPY docker/requirements.py docker/
RUN python3.11 -m venv /opt/venv \
    && python3.11 docker/requirements.py "${EXTRAS}" --ort "${ORT}" > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -c constraints.txt -r /tmp/requirements.txt
# then the project itself, without touching the dependencies; models/ is baked in when the context has it
COPY . .
RUN /opt/venv/bin/pip install --no-deps . && mkdir -p models

# -- service ---------------------------------------------------------------------------------------------------------
FROM base AS service
ARG ORT
ARG APP_UID=1000
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PKDOT_HOST=0.0.0.0 \
    PKDOT_PORT=8000 \
    PKDOT_MODELS_DIR=/models
COPY --from=build /opt/venv /opt/venv
COPY --from=build /src/docker/check_install.py /src/docker/healthcheck.py /opt/pkdot/
COPY --from=build /src/models /models
RUN python /opt/pkdot/check_install.py --ort "${ORT}"
WORKDIR /opt/pkdot
USER ${APP_UID}
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 CMD ["python", "/opt/pkdot/healthcheck.py"]
CMD ["pkdot", "serve"]
