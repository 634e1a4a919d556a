#!/bin/bash
# session 32, after the cp-only ICR arms (outputs/ab_s32.sh): bf-only A/B of model.bf_density_kernel=5 on top of
# the bank and the binned probe (references: bf_dist_bins31_s0 / s1 of ab_s30.sh), two seeds.
cd /work/main
while pgrep -f outputs/ab_s32.sh > /dev/null; do sleep 30; done
arm() {  # name task overrides...
  local A=$1 T=$2; shift 2
  [ -f outputs/logs/$A.done ] && return
  OMP_NUM_THREADS=2 .venv/bin/deepspeed launch/pretrain.py --config configs/pretrain/small.yaml train.progress=false \
      "model.tasks=[$T]" "data.task_weights={$T: 1.0}" train.steps=1500 optim.warmup_steps=100 data.k_ramp=1200 \
      "$@" train.out_dir=outputs/pretrain/$A || exit 1
  OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py --config configs/eval/latent.yaml \
      model=outputs/pretrain/$A/model "ks=[0,1,4,16]" "tasks=[$T]" device=cpu out_dir=outputs/eval/$A
  touch outputs/logs/$A.done
}
for S in 0 1; do
  arm bf_density5_s$S bf model.bf_offset_bins=31 model.bf_probe_bins=31 model.bf_density_kernel=5 \
      train.seed=$S data.seed=$S
done
