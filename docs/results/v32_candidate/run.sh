#!/bin/bash
# session 42: v31's recipe (configs/pretrain/small.yaml) with the inference option model.probe_k0_nominal=[pre_sr,
# pre_mm] (docs/results/pre_sr_k0_s41), from scratch; training is unaffected by the option, so the run should
# reproduce v31's weights bit for bit. Resumable (rerun this script). Then the latent and given evaluations
# (docs/results/candidate.sh).
cd "$(dirname "$0")/../../.." && . docs/results/candidate.sh
OMP_NUM_THREADS=2 .venv/bin/python launch/make_data.py --config configs/data/small_nominal.yaml || exit 1
candidate v32 configs/pretrain/small.yaml
