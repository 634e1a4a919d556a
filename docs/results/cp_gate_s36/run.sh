#!/bin/bash
# Session 36: cp-only A/B of model.grid_gate_table (v26's recipe, 1,500 steps per arm, as
# bf_offset_memo_s29/arm.sh), seed 0; waits for the v26 candidate to finish first. Run from the repository root.
set -e
source docs/results/bf_offset_memo_s29/arm.sh
while [ ! -f outputs/logs/v26.done ] && pgrep -f v26_candidate/run.sh > /dev/null; do sleep 30; done
arm cp_nogate_s0 cp
arm cp_gate_s0 cp model.grid_gate_table=true
