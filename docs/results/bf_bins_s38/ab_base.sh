#!/bin/bash
# session 38: session 33's loglik arm (31 bins), seed 0, rerun on today's code and shards, to check that it reproduces
# bf_offset_memo_s29's figures (the shards now hold latent_seen_more.yaml's precoding systems too).
cd "$(dirname "$0")/../../.." && source docs/results/bf_offset_memo_s29/arm.sh
while pgrep -f bf_bins_s38/ab.sh > /dev/null; do sleep 20; done
arm bf_loglik5_b31_s0_s38 bf model.bf_offset_bins=31 model.bf_probe_bins=31 model.bf_density_kernel=5 \
    model.bf_density_form=loglik model.icr_ridge_table=false model.icr_pool_table=false optim.icr_lr_mult=1 \
    train.seed=0 data.seed=0
