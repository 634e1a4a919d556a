#!/bin/bash
# session 39: bf-only A/B of train.latent_unapplied_weight (the probe's loss on the given form's panel offset, truly
# 0, charged 16x: a 1-deg error then costs what a 4-deg one did; set a priori, not tuned). Arms as
# docs/results/bf_offset_memo_s29/arm.sh (configs/pretrain/small.yaml, bf only, 1,500 steps, seed 0), each then also
# evaluated on the given form (configs/eval/default.yaml, 32 episodes, as the candidates' given evaluation).
cd "$(dirname "$0")/../../.." && source docs/results/bf_offset_memo_s29/arm.sh
given() {  # name
  [ -f outputs/logs/$1_given.done ] && return
  OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py --config configs/eval/default.yaml \
      model=outputs/pretrain/$1/model "ks=[0,1,4,16]" "tasks=[bf]" episodes=32 device=cpu \
      out_dir=outputs/eval/$1_given && touch outputs/logs/$1_given.done
}
arm bf_base_s39 bf && given bf_base_s39
arm bf_unapplied16_s39 bf train.latent_unapplied_weight=16 && given bf_unapplied16_s39
