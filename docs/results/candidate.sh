# candidate TAG CONFIG OVERRIDES...: train CONFIG with OVERRIDES from scratch into outputs/pretrain/small_TAG
# (resumable: train.resume=auto), then its latent (configs/eval/latent.yaml, 64 episodes per system) and given
# (configs/eval/default.yaml, 32 episodes) evaluations at k in {0, 1, 4, 16} into outputs/eval/TAG_latent and
# outputs/eval/TAG_given. Each step is skipped when its marker outputs/logs/TAG_{train,latent,given}.done exists, so
# rerunning a stopped candidate picks up where it ended. Sourced by the vNN_candidate/run.sh records; run from the
# repository root.
candidate() {  # tag config overrides...
  local tag=$1 cfg=$2; shift 2
  local T=outputs/pretrain/small_$tag L=outputs/logs/$tag
  mkdir -p outputs/logs
  if [ ! -f ${L}_train.done ]; then
    OMP_NUM_THREADS=2 .venv/bin/deepspeed launch/pretrain.py --config "$cfg" train.progress=false "$@" \
        train.resume=auto train.out_dir=$T || return 1
    touch ${L}_train.done
  fi
  [ -f ${L}_latent.done ] || { OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py \
      --config configs/eval/latent.yaml model=$T/model "ks=[0,1,4,16]" device=cpu out_dir=outputs/eval/${tag}_latent \
      && touch ${L}_latent.done; } || return 1
  [ -f ${L}_given.done ] || { OMP_NUM_THREADS=2 .venv/bin/python launch/evaluate.py \
      --config configs/eval/default.yaml model=$T/model episodes=32 batch_size=32 device=cpu "ks=[0,1,4,16]" \
      out_dir=outputs/eval/${tag}_given && touch ${L}_given.done; } || return 1
  touch $L.done
}
