#!/bin/bash
# model.probe_k0_nominal on the shipped weights (v31), measured only: a copy of icwm/assets/icwm-small with the
# inference option added to its config.yaml (training is unaffected by it, so these are the weights a run of the
# recipe with the option would give), evaluated like the candidates' latent form on pre_sr and pre_mm.
cd "$(dirname "$0")/../../.." || exit 1
M=outputs/models/v31_k0nominal
mkdir -p $M && cp icwm/assets/icwm-small/{config.yaml,model.safetensors} $M/ || exit 1
printf 'probe_k0_nominal:\n- pre_sr\n- pre_mm\n' >> $M/config.yaml
OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py --config configs/eval/latent.yaml model=$M \
    "tasks=[pre_sr,pre_mm]" "ks=[0,1,4,16]" device=cpu out_dir=outputs/eval/v31_k0nominal_latent
