#!/bin/bash
# session 37: v26's recipe (configs/pretrain/small.yaml on configs/data/small_nominal.yaml) with
# model.grid_gate_table=true (cp-only A/B: docs/results/cp_gate_s36), from scratch; resumable (rerun this script).
# Then the latent and given evaluations as for v26 (docs/results/candidate.sh).
cd "$(dirname "$0")/../../.." && . docs/results/candidate.sh
OMP_NUM_THREADS=2 .venv/bin/python launch/make_data.py --config configs/data/small_nominal.yaml || exit 1
candidate v27 configs/pretrain/small.yaml model.grid_gate_table=true
