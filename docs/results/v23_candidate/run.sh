#!/bin/bash
# session 32: v21 recipe + bf's offset density read-out (bank 31, binned probe 31, density kernel 5), from scratch;
# resumable. Then the latent and given evaluations as for v21.
# configs/pretrain/small.yaml was the recipe of its day (git log); the steps are docs/results/candidate.sh's.
cd "$(dirname "$0")/../../.." && . docs/results/candidate.sh
candidate v23 configs/pretrain/small.yaml model.bf_offset_bins=31 model.bf_probe_bins=31 model.bf_density_kernel=5
