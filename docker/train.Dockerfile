# PKDOT training: torch + the serve extra (face cropping and ONNX Runtime parity checks at export) + the dev extra,
# pinned by constraints.txt. The default command runs the synthetic pipeline (scripts/make-models.sh) in /app: it
# writes data/ and runs/ (compose gives them volumes) and models/ (compose binds the host's folder).
#
#   docker build -f docker/train.Dockerfile -t pkdot:train .                 # torch from PyPI: CUDA build, GBs
#   docker build -f docker/train.Dockerfile -t pkdot:train-cpu \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .   # torch==2.13.0+cpu, ~1 GB smaller
#
# torch is pinned to 2.13.0 by constraints.txt wherever it comes from. pip takes the highest match from TORCH_INDEX_URL
# and PIP_INDEX_URL together, and a local build such as 2.13.0+cpu sorts above PyPI's 2.13.0: that index's build wins.
# Build arguments (docs/docker.md): BASE_IMAGE, TORCH_INDEX_URL, EXTRA_CA_CERTS (PEM text), PIP_INDEX_URL, APP_UID;
# the standard HTTP_PROXY / HTTPS_PROXY / NO_PROXY build arguments reach apt and pip.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE}
ARG EXTRA_CA_CERTS=""
ARG APP_UID=1000
COPY docker/install-base.sh /tmp/install-base.sh
RUN bash /tmp/install-base.sh && rm /tmp/install-base.sh

ARG PIP_INDEX_URL=https://pypi.org/simple
ARG TORCH_INDEX_URL=""
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120
WORKDIR /app
COPY pyproject.toml constraints.txt ./
COPY docker/requirements.py docker/
# torch alone first (the biggest layer), from TORCH_INDEX_URL when given; then everything else
RUN python3.11 -m venv /opt/venv \
    && /opt/venv/bin/pip install -c constraints.txt \
        ${TORCH_INDEX_URL:+--index-url "${TORCH_INDEX_URL}" --extra-index-url "${PIP_INDEX_URL}"} torch \
    && python3.11 docker/requirements.py serve,train,dev --ort cpu > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -c constraints.txt -r /tmp/requirements.txt
COPY . .
# scripts/setup.sh (which make-models.sh calls) finds serve,train,dev installed in PKDOT_VENV by its stamp file;
# data/, runs/ and models/ are writable by any uid (compose runs the container as the host user)
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/python docker/check_install.py --ort cpu --torch \
    && touch "/opt/venv/.pkdot-installed-serve,train,dev" \
    && mkdir -p data runs models && chmod 1777 data runs models

ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PKDOT_VENV=/opt/venv \
    MPLCONFIGDIR=/tmp/matplotlib
USER ${APP_UID}
CMD ["bash", "scripts/make-models.sh"]
