#!/bin/bash
# Session 36: pre_mm-only A/B (v25 recipe, 1,500 steps per arm, as bf_offset_memo_s29/arm.sh): the v25 data's pre_mm
# systems against the same plus four more latent precoding geometries (configs/systems/latent_seen_more.yaml). Run from
# the repository root. (The session's arm A read pre_mm from data/shards/small_nominal as it was then, the same shards
# as the pre_mm-only build below: shard seeds depend on seed, split, task, system and shard only.)
set -e
source docs/results/bf_offset_memo_s29/arm.sh
FAM=configs/systems/seen.yaml,configs/systems/latent_seen.yaml,configs/systems/latent_seen_nominal.yaml
for D in base:$FAM extra:$FAM,configs/systems/latent_seen_more.yaml; do
  OMP_NUM_THREADS=2 .venv/bin/python launch/make_data.py --config configs/data/small_nominal.yaml "tasks=[pre_mm]" \
      "families=[${D#*:}]" "task_groups={}" "task_families={}" out_dir=data/shards/pre_mm_${D%%:*}
done
arm pre_mm_base_s0 pre_mm data.shards_dir=data/shards/pre_mm_base
arm pre_mm_extra_s0 pre_mm data.shards_dir=data/shards/pre_mm_extra
