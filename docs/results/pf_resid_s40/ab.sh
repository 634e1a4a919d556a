#!/bin/bash
# session 40: pf-only A/B of model.icr_residual_ridge=[pf] (the fit's ridge scaled per episode by rho^w_j, rho its own
# relative residual, w_j trained from 0). Arms as docs/results/bf_offset_memo_s29/arm.sh (configs/pretrain/small.yaml,
# pf only, 1,500 steps), each also evaluated on the validation family configs/systems/link_latent_val.yaml. The base
# arm is session 39's pf_base_s39 (docs/results/pf_prior_s39/ab.sh, same recipe; reused when its markers exist).
cd "$(dirname "$0")/../../.." && source docs/results/bf_offset_memo_s29/arm.sh
arm pf_base_s39 pf && val pf_base_s39 pf
arm pf_resid_s40 pf "model.icr_residual_ridge=[pf]" && val pf_resid_s40 pf
