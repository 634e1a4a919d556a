#!/bin/bash
# session 31: v21 recipe + model.grid_fit_drop=0.25, from scratch; resumable
cd /work/main
T=outputs/pretrain/small_v22
if [ ! -f outputs/logs/v22_train.done ]; then
  OMP_NUM_THREADS=2 .venv/bin/deepspeed launch/pretrain.py --config configs/pretrain/small.yaml train.progress=false \
      model.grid_fit_drop=0.25 train.resume=auto train.out_dir=$T || exit 1
  touch outputs/logs/v22_train.done
fi
[ -f outputs/logs/v22_latent.done ] || { OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py \
    --config configs/eval/latent.yaml model=$T/model "ks=[0,1,4,16]" device=cpu out_dir=outputs/eval/v22_latent \
    && touch outputs/logs/v22_latent.done; }
[ -f outputs/logs/v22_given.done ] || { OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py \
    --config configs/eval/default.yaml model=$T/model episodes=32 batch_size=32 device=cpu "ks=[0,1,4,16]" \
    out_dir=outputs/eval/v22_given && touch outputs/logs/v22_given.done; }
touch outputs/logs/v22.done
