#!/bin/bash
# session 40: v28's recipe (configs/pretrain/small.yaml) with det's channel-fit ridge trained through LMMSE's slope
# (model.det_fit_grad=true; det-only A/B in docs/results/det_grad_s40) and candidate 30's residual-scaled ridge for ce
# and pf (docs/results/v30_candidate), from scratch; resumable (rerun this script). Then the latent and given
# evaluations (docs/results/candidate.sh).
cd "$(dirname "$0")/../../.." && . docs/results/candidate.sh
OMP_NUM_THREADS=2 .venv/bin/python launch/make_data.py --config configs/data/small_nominal.yaml || exit 1
candidate v31 configs/pretrain/small.yaml model.det_fit_grad=true "model.icr_residual_ridge=[ce,pf]"
