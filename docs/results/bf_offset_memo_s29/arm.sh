# arm NAME TASK OVERRIDES...: one single-task A/B arm with configs/pretrain/small.yaml (1,500 steps), then its latent
# evaluation; skipped when outputs/logs/NAME.done exists. Sourced by ab_s30.sh, ab_s32.sh and ab_s33.sh (run from the
# repository root; s30 / s32 ran with the v21 recipe, whose bf options they state as overrides).
arm() {  # name task overrides...
  local A=$1 T=$2; shift 2
  [ -f outputs/logs/$A.done ] && return
  OMP_NUM_THREADS=2 .venv/bin/deepspeed launch/pretrain.py --config configs/pretrain/small.yaml train.progress=false \
      "model.tasks=[$T]" "data.task_weights={$T: 1.0}" train.steps=1500 optim.warmup_steps=100 data.k_ramp=1200 \
      "$@" train.out_dir=outputs/pretrain/$A || exit 1
  OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py --config configs/eval/latent.yaml \
      model=outputs/pretrain/$A/model "ks=[0,1,4,16]" "tasks=[$T]" device=cpu out_dir=outputs/eval/$A
  touch outputs/logs/$A.done
}

# val NAME TASK: NAME's evaluation on the validation family configs/systems/link_latent_val.yaml (no evaluation reads
# it; ks 0, 1, 4, 8, 16) into outputs/eval/NAME_val; skipped when outputs/logs/NAME_val.done exists.
val() {  # name task
  [ -f outputs/logs/$1_val.done ] && return
  OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py --config configs/eval/latent.yaml model=outputs/pretrain/$1/model \
      "ks=[0,1,4,8,16]" "tasks=[$2]" "families=[configs/systems/link_latent_val.yaml]" device=cpu \
      out_dir=outputs/eval/$1_val && touch outputs/logs/$1_val.done
}

# given NAME TASK: NAME's given-form evaluation (configs/eval/default.yaml, 32 episodes per system, k = 0 / 1 / 4 / 16)
# into outputs/eval/NAME_given; skipped when outputs/logs/NAME_given.done exists.
given() {  # name task
  [ -f outputs/logs/$1_given.done ] && return
  OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py --config configs/eval/default.yaml \
      model=outputs/pretrain/$1/model episodes=32 batch_size=32 device=cpu "ks=[0,1,4,16]" "tasks=[$2]" \
      out_dir=outputs/eval/$1_given && touch outputs/logs/$1_given.done
}
