# The pipeline in a container, from the same pinned lock file as `make setup` and CI (README: Docker).
# Needs BuildKit: Docker 23+ builds with it by default; Docker 20.10 with DOCKER_BUILDKIT=1.
#   docker build -t w2vpipe .                                          # on python:3.11 slim
#   docker build --build-arg BASE=w2vpipe-base:bookworm -t w2vpipe .   # on docker/base-image.sh's base
#   docker run --rm --user "$(id -u):$(id -g)" -v "$HOME/w2vpipe-out:/out" w2vpipe --set train.epochs=5
# Behind a TLS-inspecting proxy, lend pip the host's CA bundle for the build (never stored in a layer):
#   --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt
# BASE may be any image with Python 3.11 (what requirements.lock was made on) on Debian or Ubuntu.
ARG BASE=python:3.11.14-slim-bookworm
FROM ${BASE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# git for DVC and the runs' git.commit lineage, where the base lacks it (the slim Python image does).
# Not pinned: BASE may be any Debian or Ubuntu release, and their archives keep only the current version.
# hadolint ignore=DL3008
RUN command -v git >/dev/null \
    || { apt-get update \
         && apt-get install -y --no-install-recommends git ca-certificates \
         && rm -rf /var/lib/apt/lists/*; }

# --build-arg UID=$(id -u) makes the image's user the owner of the folder you mount on /out.
ARG UID=1000
RUN useradd --create-home --non-unique --uid "${UID}" --user-group w2v \
    && install -d -o w2v -g w2v /app /out

# The dependencies first: this layer is rebuilt only when requirements.lock changes. A venv, because
# Debian's Python refuses system-wide pip installs; python3, because the slim image's python is in
# /usr/local/bin and Debian's in /usr/bin.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    LANG=C.UTF-8 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.lock ./
# GPU hosts: --build-arg EXTRA_PACKAGES="jax[cuda12]==0.10.2" adds JAX's CUDA wheels (the default
# training); "tensorflow[and-cuda]==2.21.0" TensorFlow's (the tutorial's Adam recipe).
ARG EXTRA_PACKAGES=""
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca REQUESTS_CA_BUNDLE=/run/secrets/ca; fi \
    && echo "${EXTRA_PACKAGES}" | tr ' ' '\n' >/tmp/extra-packages.txt \
    && python3 -m venv "$VIRTUAL_ENV" \
    && pip install --no-cache-dir pip==26.3 setuptools==84.2.1 \
    && pip install --no-cache-dir -r requirements.lock -r /tmp/extra-packages.txt \
    && rm /tmp/extra-packages.txt

# The whole checkout, .git included: DVC needs the repository, and each run records its commit
# (.dockerignore leaves out only what git ignores). Offline: setuptools is already in the venv.
COPY --chown=w2v:w2v . .
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e .

USER ${UID}
ENV DO_NOT_TRACK=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    TF_CPP_MIN_LOG_LEVEL=3
# Runs `python -m pipeline repro` and leaves its results in /out (docker/entrypoint.sh --help).
ENTRYPOINT ["/app/docker/entrypoint.sh"]
