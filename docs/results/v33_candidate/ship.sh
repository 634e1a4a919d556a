#!/bin/bash
# The mechanical part of shipping candidate 33, to run only after judge.py printed "verdict: ship" (README): the run's
# export becomes icwm/assets/icwm-small (config.yaml, model.safetensors, metadata.json: no edit), its evaluations are
# kept under docs/results/v33_candidate/{latent,given}, the recipe (configs/pretrain/small.yaml) takes the candidate's
# three settings, and the README demo is rerun into icwm/assets/icwm-small/demo.png. The model card, README figures,
# docs/model.md and history are written by hand from these files; tests/test_configs.py checks that the export's
# pretrain_config is the recipe's.
set -euo pipefail
cd "$(dirname "$0")/../../.."
T=outputs/pretrain/small_v33/model
for f in $T/{config.yaml,model.safetensors,metadata.json} \
         outputs/eval/v33_{latent,given}/{config.yaml,report.md,results.csv}; do
  [ -f "$f" ] || { echo "ship.sh: missing $f (nothing copied)" >&2; exit 1; }
done
.venv/bin/python - <<'PY'
from pathlib import Path
p = Path("configs/pretrain/small.yaml")
lines = p.read_text().splitlines(keepends=True)
at = [i for i, line in enumerate(lines) if line.startswith("  probe_k0_nominal:")]
steps = [i for i, line in enumerate(lines) if line == "  steps: 9000\n"]
assert len(at) == 1 and len(steps) == 1
lines[steps[0]] = "  steps: 11000                # optimiser steps (v32: 9000)\n"
lines[at[0] + 1:at[0] + 1] = [
    "  probe_k0_unapplied_zero: [pe] # inference: a given-form pair with no earlier pairs reads offset 0 (v32: [])\n",
    "  offset_stated_only: [bf]     # bf rotates by the probe's offset only where a nominal is stated (v32: [])\n"]
p.write_text("".join(lines))
PY
for f in config.yaml model.safetensors metadata.json; do cp "$T/$f" icwm/assets/icwm-small/; done
for form in latent given; do
  mkdir -p docs/results/v33_candidate/$form
  cp outputs/eval/v33_$form/{config.yaml,report.md,results.csv} docs/results/v33_candidate/$form/
done
OMP_NUM_THREADS=2 .venv/bin/python launch/demo.py --out outputs/demo_v33
cp outputs/demo_v33/demo.png icwm/assets/icwm-small/demo.png
OMP_NUM_THREADS=2 .venv/bin/python -m pytest -q tests/test_configs.py
