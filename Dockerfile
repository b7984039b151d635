# The pipeline in a container: same pinned lock file as `make setup` and CI.
#   docker build -t w2vpipe .
#   docker run --rm -v "$PWD/../shared/corpora:/corpora:ro" -e W2V_CORPUS_MIRROR=/corpora w2vpipe
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install --yes --no-install-recommends git make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir -r requirements.lock \
    && pip install --no-cache-dir --no-deps -e .

# The whole checkout, .git included: DVC needs the repository and its history.
COPY . .
ENV DO_NOT_TRACK=true \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
CMD ["python", "-m", "pipeline", "repro"]
