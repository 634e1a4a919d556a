#!/bin/bash
# session 32: cp-only arm of model.icr_pool_table with the ridge table and optim.icr_lr_mult=10 (after the v23 run);
# usage: ab_pool.sh [SEED] (default 0)
cd /work/main
while pgrep -f v23_candidate/run.sh > /dev/null || pgrep -f /tmp/fc.sh > /dev/null; do sleep 20; done
S=${1:-0}
A=cp_pooltable_lr10_s$S
[ -f outputs/logs/$A.done ] && exit 0
OMP_NUM_THREADS=2 .venv/bin/deepspeed launch/pretrain.py --config configs/pretrain/small.yaml train.progress=false \
    "model.tasks=[cp]" "data.task_weights={cp: 1.0}" train.steps=1500 optim.warmup_steps=100 data.k_ramp=1200 \
    model.icr_ridge_table=true model.icr_pool_table=true optim.icr_lr_mult=10 train.seed=$S data.seed=$S \
    train.resume=auto train.out_dir=outputs/pretrain/$A || exit 1
OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py --config configs/eval/latent.yaml \
    model=outputs/pretrain/$A/model "ks=[0,1,4,16]" "tasks=[cp]" device=cpu out_dir=outputs/eval/$A
touch outputs/logs/$A.done
