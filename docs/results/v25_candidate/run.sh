#!/bin/bash
# session 33: v24's recipe (configs/pretrain/small.yaml) + model.bf_density_form=loglik (bf-only A/B, two seeds:
# unseen eta(16) 0.77 / 0.80 -> 0.89 / 0.90, docs/results/bf_offset_memo_s29), from scratch; resumable (rerun this
# script). Then the latent and given evaluations as for v24 (docs/results/candidate.sh).
cd "$(dirname "$0")/../../.." && . docs/results/candidate.sh
candidate v25 configs/pretrain/small.yaml model.bf_density_form=loglik
