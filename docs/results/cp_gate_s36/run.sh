#!/bin/bash
# cp-only A/B of model.grid_gate_table (v26's recipe, 1,500 steps per arm, as bf_offset_memo_s29/arm.sh), seed 0.
# Run from the repository root. Session 37 resumed arm A from its step-1,000 checkpoint of session 36
# (train.resume=auto; a fresh start when there is none).
set -e
source docs/results/bf_offset_memo_s29/arm.sh
arm cp_nogate_s0 cp train.resume=auto
arm cp_gate_s0 cp model.grid_gate_table=true
# Session 37, after v27. Arm C: cp's pair 0 as the first guess alone in training too (model.grid_k0_first_guess as
# of 81d953f; since then the option acts at inference only, so rerunning this line now trains arm A again).
arm cp_k0fg_s0 cp "model.grid_k0_first_guess=[cp]"
# Arm D: arm A's weights with the option as it is now (inference only), evaluated on the latent and validation
# families; the copied config.yaml gains one line, a measurement, not a model anyone ships.
D=outputs/pretrain/cp_nogate_s0_k0fg_eval
mkdir -p $D/model && cp outputs/pretrain/cp_nogate_s0/model/* $D/model/
sed -i 's/^grid_gate_table: false/grid_gate_table: false\ngrid_k0_first_guess: [cp]/' $D/model/config.yaml
for A in cp_nogate_s0 cp_k0fg_s0; do
  OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py --config configs/eval/latent.yaml \
      model=outputs/pretrain/$A/model "ks=[0,1,4,16]" "tasks=[cp]" "families=[link_latent_val]" "task_prefix={}" \
      device=cpu out_dir=outputs/eval/${A}_val
done
OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py --config configs/eval/latent.yaml model=$D/model \
    "ks=[0,1,4,16]" "tasks=[cp]" device=cpu out_dir=outputs/eval/cp_nogate_s0_k0fg_latent
OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py --config configs/eval/latent.yaml model=$D/model \
    "ks=[0,1,4,16]" "tasks=[cp]" "families=[link_latent_val]" "task_prefix={}" device=cpu \
    out_dir=outputs/eval/cp_nogate_s0_k0fg_val
