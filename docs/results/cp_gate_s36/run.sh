#!/bin/bash
# cp-only A/B of model.grid_gate_table (v26's recipe, 1,500 steps per arm, as bf_offset_memo_s29/arm.sh), seed 0.
# Run from the repository root. Session 37 resumed arm A from its step-1,000 checkpoint of session 36
# (train.resume=auto; a fresh start when there is none).
set -e
source docs/results/bf_offset_memo_s29/arm.sh
arm cp_nogate_s0 cp train.resume=auto
arm cp_gate_s0 cp model.grid_gate_table=true
# Session 37, after v27: cp's pair 0 as the first guess alone (model.grid_k0_first_guess), no gate, beside arm A
arm cp_k0fg_s0 cp "model.grid_k0_first_guess=[cp]"
