#!/bin/bash
# session 33, after the v24 candidate (docs/results/v24_candidate/run.sh): bf-only A/B of model.bf_density_form=loglik
# against session 32's bf_density5_s0 / s1 (the same arm with the "mean" form), two seeds. The ICR settings are v21's,
# as in session 32's arms (v24's tables add parameters, which would move every later initialisation).
cd /work/main
while pgrep -f v24_candidate/run.sh > /dev/null || pgrep -f outputs/s33c.sh > /dev/null; do sleep 30; done
source docs/results/bf_offset_memo_s29/arm.sh
for S in 0 1; do
  arm bf_loglik5_s$S bf model.bf_offset_bins=31 model.bf_probe_bins=31 model.bf_density_kernel=5 \
      model.bf_density_form=loglik model.icr_ridge_table=false model.icr_pool_table=false optim.icr_lr_mult=1 \
      train.seed=$S data.seed=$S
done
touch outputs/logs/ab_s33.done
