#!/bin/bash
# session 40: v28's recipe (configs/pretrain/small.yaml) with the residual-scaled in-context ridge for ce and pf
# (model.icr_residual_ridge=[ce,pf]; pf-only A/B in docs/results/pf_resid_s40, ce set a priori), from scratch;
# resumable (rerun this script). Then the latent and given evaluations (docs/results/candidate.sh).
cd "$(dirname "$0")/../../.." && . docs/results/candidate.sh
OMP_NUM_THREADS=2 .venv/bin/python launch/make_data.py --config configs/data/small_nominal.yaml || exit 1
candidate v30 configs/pretrain/small.yaml "model.icr_residual_ridge=[ce,pf]"
