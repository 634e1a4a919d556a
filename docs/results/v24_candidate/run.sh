#!/bin/bash
# session 33: v23's recipe (configs/pretrain/small.yaml) + the ICR step-size options of the cp-only arms
# (docs/results/icr_k1_s31: ridge table, pool table, optim.icr_lr_mult=10), from scratch; resumable. Then the latent
# and given evaluations as for v23.
cd /work/main
while pgrep -f outputs/s33.sh > /dev/null; do sleep 20; done
T=outputs/pretrain/small_v24
if [ ! -f outputs/logs/v24_train.done ]; then
  OMP_NUM_THREADS=2 .venv/bin/deepspeed launch/pretrain.py --config configs/pretrain/small.yaml train.progress=false \
      model.icr_ridge_table=true model.icr_pool_table=true optim.icr_lr_mult=10 train.resume=auto train.out_dir=$T \
      || exit 1
  touch outputs/logs/v24_train.done
fi
[ -f outputs/logs/v24_latent.done ] || { OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py \
    --config configs/eval/latent.yaml model=$T/model "ks=[0,1,4,16]" device=cpu out_dir=outputs/eval/v24_latent \
    && touch outputs/logs/v24_latent.done; }
[ -f outputs/logs/v24_given.done ] || { OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py \
    --config configs/eval/default.yaml model=$T/model episodes=32 batch_size=32 device=cpu "ks=[0,1,4,16]" \
    out_dir=outputs/eval/v24_given && touch outputs/logs/v24_given.done; }
touch outputs/logs/v24.done
