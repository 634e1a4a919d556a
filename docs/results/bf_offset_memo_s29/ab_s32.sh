#!/bin/bash
# session 32, after the cp-only ICR arms (docs/results/icr_k1_s31/ab_s32.sh): bf-only A/B of
# model.bf_density_kernel=5 on top of the bank and the binned probe (references: bf_dist_bins31_s0 / s1 of ab_s30.sh),
# two seeds.
cd /work/main
while pgrep -f icr_k1_s31/ab_s32.sh > /dev/null; do sleep 30; done
source docs/results/bf_offset_memo_s29/arm.sh
for S in 0 1; do
  arm bf_density5_s$S bf model.bf_offset_bins=31 model.bf_probe_bins=31 model.bf_density_kernel=5 \
      train.seed=$S data.seed=$S
done
