#!/bin/bash
# sessions 37-38: v26's recipe (configs/pretrain/small.yaml on configs/data/small_nominal.yaml) with
# model.grid_k0_first_guess=[cp] (cp's pair 0 predicts its first guess, the blind AR, at inference; training
# unchanged; cp-only A/B and the validation family in docs/results/cp_gate_s36), from scratch; resumable (rerun this
# script). Then the latent and given evaluations as for v26 (docs/results/candidate.sh). To ship it, small.yaml states
# the option (the shipped metadata's pretrain_config must equal small.yaml's).
cd "$(dirname "$0")/../../.." && . docs/results/candidate.sh
OMP_NUM_THREADS=2 .venv/bin/python launch/make_data.py --config configs/data/small_nominal.yaml || exit 1
candidate v28 configs/pretrain/small.yaml "model.grid_k0_first_guess=[cp]"
