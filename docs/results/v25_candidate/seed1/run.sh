#!/bin/bash
# session 34: a second seed of version 25's recipe (configs/pretrain/small.yaml as shipped), train.seed=1 data.seed=1,
# from scratch; resumable (rerun this script). Then the latent and given evaluations (docs/results/candidate.sh).
cd "$(dirname "$0")/../../../.." && . docs/results/candidate.sh
candidate v25_seed1 configs/pretrain/small.yaml train.seed=1 data.seed=1
