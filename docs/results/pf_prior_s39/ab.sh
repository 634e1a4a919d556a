#!/bin/bash
# session 39: pf-only A/B of the in-context fit's prior on the prediction regressor (model.icr_prediction_prior; run
# at commit 00dc51b, which had the option, removed since);
# arms as docs/results/bf_offset_memo_s29/arm.sh (configs/pretrain/small.yaml, pf only, 1,500 steps), each then also
# evaluated on the validation family configs/systems/link_latent_val.yaml (no evaluation reads it).
cd "$(dirname "$0")/../../.." && source docs/results/bf_offset_memo_s29/arm.sh
val() {  # name
  [ -f outputs/logs/$1_val.done ] && return
  OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py --config configs/eval/latent.yaml model=outputs/pretrain/$1/model \
      "ks=[0,1,4,8,16]" "tasks=[pf]" "families=[configs/systems/link_latent_val.yaml]" device=cpu \
      out_dir=outputs/eval/$1_val && touch outputs/logs/$1_val.done
}
arm pf_base_s39 pf && val pf_base_s39
[ "$1" = base ] && exit 0
arm pf_prior_s39 pf "model.icr_prediction_prior=[pf]" && val pf_prior_s39
