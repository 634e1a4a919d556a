#!/bin/bash
# session 38: v28's recipe (configs/pretrain/small.yaml) with bf's offset grid at 1 deg (model.bf_offset_bins=61,
# model.bf_probe_bins=61 over +-30 deg, instead of 31 at 2 deg; bf-only A/B on two seeds in docs/results/bf_bins_s38),
# from scratch; resumable (rerun this script). Then the latent and given evaluations (docs/results/candidate.sh).
cd "$(dirname "$0")/../../.." && . docs/results/candidate.sh
OMP_NUM_THREADS=2 .venv/bin/python launch/make_data.py --config configs/data/small_nominal.yaml || exit 1
candidate v29 configs/pretrain/small.yaml model.bf_offset_bins=61 model.bf_probe_bins=61
