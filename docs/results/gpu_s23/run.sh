#!/usr/bin/env bash
# Session 23 device experiment: does more training data per step close issue 14's latent misses?
# Three runs of configs/pretrain/small.yaml from scratch at once on one GPU (fp32): batch 16 (the recipe), 32, 64.
# Usage, from the repo root with wheels of the packages the GPU image lacks in .whl/ (README.md beside this file):
#   bash docs/results/gpu_s23/run.sh OUT STEPS TRAIN_WALL_S EVAL_EPISODES [PY]
set -u
OUT=$1; STEPS=$2; WALL=$3; EPS=$4; PY=${5:-python3}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
if [ "$PY" = python3 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 3
  export PYTHONPATH=/tmp/site:$PWD
  nvidia-smi --query-gpu=name,memory.used --format=csv
fi
stamp installed
$PY -c "import torch, deepspeed, sionna, omegaconf, webdataset; print(torch.__version__, torch.cuda.is_available())" \
  || exit 4
W=${W:-/tmp/s23}; mkdir -p $W
$PY launch/make_data.py --config configs/data/small_nominal.yaml out_dir=$W/shards workers=${MKW:-12} \
  ${MKEXTRA:-} > $W/make_data.log 2>&1 || { tail -20 $W/make_data.log; exit 5; }
tail -4 $W/make_data.log; stamp data
i=0
for B in 16 32 64; do
  i=$((i+1))
  MASTER_ADDR=127.0.0.1 MASTER_PORT=$((29600+i)) RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 timeout $WALL \
    $PY launch/pretrain.py --config configs/pretrain/small.yaml train.progress=false data.shards_dir=$W/shards \
    data.batch_size=$B train.steps=$STEPS deepspeed.precision=fp32 train.out_dir=$W/b$B train.num_workers=4 \
    ${EXTRA:-} \
    > $W/train_b$B.log 2>&1 &
done
ckpts() { ls -d $W/b*/checkpoints/step_* 2>/dev/null | sed 's#.*/\(b[0-9]*\)/checkpoints/step_0*#\1:#' | tr '\n' ' '; }
( while true; do sleep 30; stamp "$(ckpts)"; done ) &
MONPID=$!
wait $(jobs -p | grep -v $MONPID) 2>/dev/null; kill $MONPID; stamp trained
for B in 16 32 64; do     # a run cut by the wall: export its newest checkpoint (schedule not finished)
  if [ ! -f $W/b$B/model/config.yaml ]; then
    LAST=$(ls -d $W/b$B/checkpoints/step_* 2>/dev/null | tail -1 | sed 's#.*step_0*##')
    [ -n "$LAST" ] && MASTER_ADDR=127.0.0.1 MASTER_PORT=29650 RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 timeout 60 \
      $PY launch/pretrain.py --config configs/pretrain/small.yaml train.progress=false data.shards_dir=$W/shards \
      data.batch_size=$B train.steps=$LAST deepspeed.precision=fp32 train.out_dir=$W/b$B > $W/export_b$B.log 2>&1
    echo "b$B cut at step $LAST"
  fi
done
for B in 16 32 64; do
  echo "== b$B"; grep -E "step +[0-9]+.*(it/s|s/it|loss)" $W/train_b$B.log | tail -2; tail -2 $W/train_b$B.log
done
for B in 16 32 64; do
  if [ -f $W/b$B/model/config.yaml ]; then
    timeout ${EVW:-170} $PY launch/evaluate.py --config configs/eval/latent.yaml model=$W/b$B/model "ks=[0,1,4,16]" \
      "tasks=[pre_sr,pre_mm,det,ce,cp,pf,bf,de,pe]" "families=[latent_unseen]" episodes=$EPS device=${DEV:-cuda} \
      out_dir=$W/eval_b$B \
      > $W/eval_b$B.log 2>&1 &
  fi
done
wait; stamp evaluated
for B in 16 32 64; do tail -3 $W/eval_b$B.log 2>/dev/null; done
rm -rf $W/shards; find $W -name "checkpoints" -prune -exec rm -rf {} \; 2>/dev/null
find $W -type d -name "ckpt*" -prune -exec rm -rf {} \; 2>/dev/null
for B in 16 32 64; do [ -d $W/b$B/model ] && tar czf $OUT/model_b$B.tgz -C $W/b$B model; rm -rf $W/b$B/model; done
tar czf $OUT/s23.tgz -C $W . ; ls -la $OUT; stamp done
