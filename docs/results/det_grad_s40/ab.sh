#!/bin/bash
# session 40: det-only A/B of model.det_fit_grad (det's channel-fit ridge trained through LMMSE's slope at the fitted
# channel; EP, the first guess, runs without gradient). Arms as docs/results/bf_offset_memo_s29/arm.sh
# (configs/pretrain/small.yaml, det only, 1,500 steps, seed 0), then each arm's eta(1) against its one-pair ridge on
# seed-7 episodes of the training systems (sweep.py).
cd "$(dirname "$0")/../../.." && source docs/results/bf_offset_memo_s29/arm.sh
D=docs/results/det_grad_s40
for a in det_base_s40 det_grad_s40; do
  if [ $a = det_base_s40 ]; then arm $a det; else arm $a det model.det_fit_grad=true; fi
  [ -f $D/sweep_$a.csv ] || OMP_NUM_THREADS=2 .venv/bin/python $D/sweep.py --model outputs/pretrain/$a/model \
      --out $D/sweep_$a.csv || exit 1
done
