# The Vertex AI training container: Python 3.11 (as the tests), the trainer's locked dependencies
# (requirements-trainer.lock, the trainer's and the gate's part of requirements.lock), the
# `trainer` package and the `recflow` package for the gate's job (`python -m
# recflow.promotion.command gate`, set by `recflow gate-job`); no dbt. Tagged by `recflow trainer-image` with a hash of what this file
# copies; built and pushed by the continuous-training workflow when that tag is new.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RECFLOW_LOG_FORMAT=json

# LightGBM and implicit link OpenMP, which the slim image does not have.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 trainer

WORKDIR /app
COPY requirements-trainer.lock ./
# Exactly the locked wheels, nothing resolved at build time; pip check proves the set complete.
RUN python -m pip install --no-deps --only-binary=:all: --requirement requirements-trainer.lock \
    && python -m pip check
COPY trainer/ trainer/
COPY recflow/ recflow/

USER trainer
ENTRYPOINT ["python", "-m", "trainer.task"]
