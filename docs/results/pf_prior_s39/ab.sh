#!/bin/bash
# session 39: pf-only A/B of the in-context fit's prior on the prediction regressor (model.icr_prediction_prior; run
# at commit 00dc51b, which had the option, removed since);
# arms as docs/results/bf_offset_memo_s29/arm.sh (configs/pretrain/small.yaml, pf only, 1,500 steps), each then also
# evaluated on the validation family (arm.sh's val).
cd "$(dirname "$0")/../../.." && source docs/results/bf_offset_memo_s29/arm.sh
arm pf_base_s39 pf && val pf_base_s39 pf
[ "$1" = base ] && exit 0
arm pf_prior_s39 pf "model.icr_prediction_prior=[pf]" && val pf_prior_s39 pf
