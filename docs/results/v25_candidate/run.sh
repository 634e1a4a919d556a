#!/bin/bash
# session 33: v24's recipe (configs/pretrain/small.yaml) + model.bf_density_form=loglik (bf-only A/B, two seeds:
# unseen eta(16) 0.77 / 0.80 -> 0.89 / 0.90, docs/results/bf_offset_memo_s29), from scratch; resumable (rerun this
# script: train.resume=auto and the done markers). Then the latent and given evaluations as for v24.
cd /work/main
while pgrep -f /tmp/fc.sh > /dev/null; do sleep 10; done
T=outputs/pretrain/small_v25
if [ ! -f outputs/logs/v25_train.done ]; then
  OMP_NUM_THREADS=2 .venv/bin/deepspeed launch/pretrain.py --config configs/pretrain/small.yaml train.progress=false \
      model.bf_density_form=loglik train.resume=auto train.out_dir=$T || exit 1
  touch outputs/logs/v25_train.done
fi
[ -f outputs/logs/v25_latent.done ] || { OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py \
    --config configs/eval/latent.yaml model=$T/model "ks=[0,1,4,16]" device=cpu out_dir=outputs/eval/v25_latent \
    && touch outputs/logs/v25_latent.done; }
[ -f outputs/logs/v25_given.done ] || { OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py \
    --config configs/eval/default.yaml model=$T/model episodes=32 batch_size=32 device=cpu "ks=[0,1,4,16]" \
    out_dir=outputs/eval/v25_given && touch outputs/logs/v25_given.done; }
touch outputs/logs/v25.done
