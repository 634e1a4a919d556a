#!/bin/bash
# session 33: v23's recipe (configs/pretrain/small.yaml) + the ICR step-size options of the cp-only arms
# (docs/results/icr_k1_s31: ridge table, pool table, optim.icr_lr_mult=10), from scratch; resumable. Then the latent
# and given evaluations as for v23.
# configs/pretrain/small.yaml was the recipe of its day (git log); the steps are docs/results/candidate.sh's.
cd "$(dirname "$0")/../../.." && . docs/results/candidate.sh
candidate v24 configs/pretrain/small.yaml model.icr_ridge_table=true model.icr_pool_table=true optim.icr_lr_mult=10
