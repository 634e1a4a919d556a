#!/bin/bash
# session 31: cp-only A/B of model.icr_ridge_table (references: cp_drop0_s0 / cp_drop0_s1 of ab_s30 / ab_s31);
# resumable (train.resume=auto; done markers)
cd /work/main
arm() {  # name task overrides...
  local A=$1 T=$2; shift 2
  [ -f outputs/logs/$A.done ] && return
  OMP_NUM_THREADS=2 .venv/bin/deepspeed launch/pretrain.py --config configs/pretrain/small.yaml train.progress=false \
      "model.tasks=[$T]" "data.task_weights={$T: 1.0}" train.steps=1500 optim.warmup_steps=100 data.k_ramp=1200 \
      "$@" train.resume=auto train.out_dir=outputs/pretrain/$A || exit 1
  OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py --config configs/eval/latent.yaml \
      model=outputs/pretrain/$A/model "ks=[0,1,4,16]" "tasks=[$T]" device=cpu out_dir=outputs/eval/$A
  touch outputs/logs/$A.done
}
arm cp_table_s0 cp model.icr_ridge_table=true train.seed=0 data.seed=0
arm cp_table_s1 cp model.icr_ridge_table=true train.seed=1 data.seed=1
