#!/bin/bash
# session 30, after the trunk run: bf-only A/B of model.bf_probe_bins (with the offset bank), two seeds; then
# cp-only A/B of model.grid_fit_drop, two seeds. Each arm resumable via its done marker.
cd /work/main
while pgrep -f s30_trunk.sh > /dev/null; do sleep 30; done
source docs/results/bf_offset_memo_s29/arm.sh
for S in 0 1; do
  arm bf_dist_bins31_s$S bf model.bf_offset_bins=31 model.bf_probe_bins=31 train.seed=$S data.seed=$S
done
for S in 0 1; do
  arm cp_drop0_s$S cp train.seed=$S data.seed=$S
  arm cp_drop25_s$S cp model.grid_fit_drop=0.25 train.seed=$S data.seed=$S
done
