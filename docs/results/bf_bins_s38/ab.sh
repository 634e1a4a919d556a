#!/bin/bash
# session 38: bf-only A/B of a finer offset grid (model.bf_offset_bins = bf_probe_bins = 61: 1-deg centres and bump
# width over +-30 deg, instead of 31 at 2 deg) against session 33's loglik arms (bf_offset_memo_s29/ab_s33.sh: the same
# arm, v21's ICR settings, seeds 0 and 1). Why: the Bayes reference (docs/results/latent_bound_s38) reaches eta(16)
# 0.92 / 0.94 (seen / unseen) and the model 0.64 / 0.91 with a 1.1-deg offset error, about the 2-deg grid's resolution.
cd "$(dirname "$0")/../../.." && source docs/results/bf_offset_memo_s29/arm.sh
for S in 0 1; do
  arm bf_loglik5_b61_s$S bf model.bf_offset_bins=61 model.bf_probe_bins=61 model.bf_density_kernel=5 \
      model.bf_density_form=loglik model.icr_ridge_table=false model.icr_pool_table=false optim.icr_lr_mult=1 \
      train.seed=$S data.seed=$S
done
