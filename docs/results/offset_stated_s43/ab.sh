#!/bin/bash
# session 43 (run alone on the 2-core VM, about 50 min): pe-only and bf-only A/Bs of model.offset_stated_only (the
# head applies the probe's offset only where the batch states its nominal; the given form applies none). Arms as
# docs/results/bf_offset_memo_s29/arm.sh (configs/pretrain/small.yaml, one task, 1,500 steps, seed 0, latent
# evaluation; v32's pre_* inference option model.probe_k0_nominal dropped, its tasks absent), each also evaluated in
# the given form (configs/eval/default.yaml, 32 episodes per system, k = 0 / 1 / 4 / 16) into outputs/eval/NAME_given.
# Compare the given forms with docs/results/v17_latent/given_paired.py and the latent forms with
# docs/results/eta_table.py.
cd "$(dirname "$0")/../../.." && source docs/results/bf_offset_memo_s29/arm.sh
for T in pe bf; do
  arm ${T}_base_s43 $T "model.probe_k0_nominal=[]" && given ${T}_base_s43 $T
  arm ${T}_stated_s43 $T "model.probe_k0_nominal=[]" "model.offset_stated_only=[$T]" && given ${T}_stated_s43 $T
done
