#!/bin/bash
# session 31: v21 recipe + model.grid_fit_drop=0.25, from scratch; resumable
# configs/pretrain/small.yaml was the recipe of its day (git log); the steps are docs/results/candidate.sh's.
cd "$(dirname "$0")/../../.." && . docs/results/candidate.sh
candidate v22 configs/pretrain/small.yaml model.grid_fit_drop=0.25
