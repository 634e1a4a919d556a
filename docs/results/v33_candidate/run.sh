#!/bin/bash
# session 43: v32's recipe (configs/pretrain/small.yaml) with 11,000 optimiser steps instead of 9,000 and the inference
# option model.probe_k0_unapplied_zero=[pe] (docs/results/given_offset_s42) and model.offset_stated_only=[bf]
# (docs/results/offset_stated_s43), from scratch. Resumable (rerun this
# script). Then the latent and given evaluations (docs/results/candidate.sh). The training's first start time is kept in
# outputs/logs/v33_train.start (UTC seconds); its end is the mtime of outputs/logs/v33_train.done.
cd "$(dirname "$0")/../../.." && . docs/results/candidate.sh
OMP_NUM_THREADS=2 .venv/bin/python launch/make_data.py --config configs/data/small_nominal.yaml || exit 1
mkdir -p outputs/logs && [ -f outputs/logs/v33_train.start ] || date -u +%s > outputs/logs/v33_train.start
candidate v33 configs/pretrain/small.yaml train.steps=11000 "model.probe_k0_unapplied_zero=[pe]" \
    "model.offset_stated_only=[bf]"
