#!/bin/bash
# session 32: cp-only ICR step-size arms (table + lr x10 seed 1; lr x10 without table seed 0)
cd /work/main
run() {  # name seed extra...
  A=$1; S=$2; shift 2
  [ -f outputs/logs/$A.done ] && return 0
  OMP_NUM_THREADS=2 .venv/bin/deepspeed launch/pretrain.py --config configs/pretrain/small.yaml train.progress=false \
    "model.tasks=[cp]" "data.task_weights={cp: 1.0}" train.steps=1500 optim.warmup_steps=100 data.k_ramp=1200 \
    "$@" train.seed=$S data.seed=$S train.resume=auto train.out_dir=outputs/pretrain/$A || exit 1
  OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py --config configs/eval/latent.yaml \
    model=outputs/pretrain/$A/model "ks=[0,1,4,16]" "tasks=[cp]" device=cpu out_dir=outputs/eval/$A || exit 1
  touch outputs/logs/$A.done
}
run cp_table_lr10_s1 1 model.icr_ridge_table=true optim.icr_lr_mult=10
run cp_lr10_s0 0 optim.icr_lr_mult=10
touch outputs/logs/ab_s32.done
