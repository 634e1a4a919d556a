#!/bin/bash
# session 35: trunk-only ablation of version 25's recipe (configs/pretrain/small_trunk.yaml: small.yaml with
# model.icr: false and no bf offset density), same data, seed and steps; resumable (rerun this script). Then the
# latent and given evaluations (docs/results/candidate.sh).
cd "$(dirname "$0")/../../.." && . docs/results/candidate.sh
candidate trunk_v25 configs/pretrain/small_trunk.yaml
