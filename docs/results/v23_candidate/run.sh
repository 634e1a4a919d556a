#!/bin/bash
# session 32: v21 recipe + bf's offset density read-out (bank 31, binned probe 31, density kernel 5), from scratch;
# resumable. Then the latent and given evaluations as for v21.
cd /work/main
while pgrep -f after_bf.sh > /dev/null; do sleep 10; done
T=outputs/pretrain/small_v23
if [ ! -f outputs/logs/v23_train.done ]; then
  OMP_NUM_THREADS=2 .venv/bin/deepspeed launch/pretrain.py --config configs/pretrain/small.yaml train.progress=false \
      model.bf_offset_bins=31 model.bf_probe_bins=31 model.bf_density_kernel=5 train.resume=auto train.out_dir=$T \
      || exit 1
  touch outputs/logs/v23_train.done
fi
[ -f outputs/logs/v23_latent.done ] || { OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py \
    --config configs/eval/latent.yaml model=$T/model "ks=[0,1,4,16]" device=cpu out_dir=outputs/eval/v23_latent \
    && touch outputs/logs/v23_latent.done; }
[ -f outputs/logs/v23_given.done ] || { OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py \
    --config configs/eval/default.yaml model=$T/model episodes=32 batch_size=32 device=cpu "ks=[0,1,4,16]" \
    out_dir=outputs/eval/v23_given && touch outputs/logs/v23_given.done; }
touch outputs/logs/v23.done
