#!/bin/bash
# session 36: v25's recipe (configs/pretrain/small.yaml) on configs/data/small_nominal.yaml with four more latent
# precoding geometries (configs/systems/latent_seen_more.yaml; pre_mm-only A/B: docs/results/pre_mm_geom_s36), from
# scratch; resumable (rerun this script). The shards are brought up to date first (complete shards are skipped), then
# the latent and given evaluations as for v25 (docs/results/candidate.sh).
cd "$(dirname "$0")/../../.." && . docs/results/candidate.sh
OMP_NUM_THREADS=2 .venv/bin/python launch/make_data.py --config configs/data/small_nominal.yaml || exit 1
candidate v26 configs/pretrain/small.yaml
