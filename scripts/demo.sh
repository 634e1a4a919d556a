#!/usr/bin/env bash
# One-command demo on a fresh machine (a few minutes on 2 CPU cores): set up, generate a small dataset with the data
# engine, run a short DeepSpeed pretraining of the `debug` flavour on it, then few-shot inference with the shipped
# icwm-small model on an unseen configuration whose SNR is hidden, beside oracle / blind / classical in-context WMMSE
# designs (table + outputs/demo/demo.png).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
PY=.venv/bin/python
$PY launch/make_data.py --config configs/data/debug.yaml out_dir=outputs/demo/shards
.venv/bin/deepspeed launch/pretrain.py --config configs/pretrain/debug.yaml train.out_dir=outputs/demo/pretrain \
    data.source=shards data.shards_dir=outputs/demo/shards train.steps=40 train.resume=none
$PY launch/demo.py --out outputs/demo
