"""Fine-tune an LLM backbone on the wireless tasks (LoRA, MoE-LoRA, NF4 LoftQ / naive, frozen, no-LLM).

    python launch/finetune_llm.py --config configs/adapters/debug.yaml [key=value ...]
    python launch/finetune_llm.py --config configs/adapters/smollm2_lora.yaml train.steps=200
    deepspeed launch/finetune_llm.py --config configs/adapters/gpt2_lora.yaml backbone.path=/models/gpt2
    deepspeed --num_gpus 2 launch/finetune_llm.py --config configs/adapters/debug.yaml deepspeed.zero_stage=1
    # early stopping: validate every 50 steps on 1 held-out group per task and system, stop after 5 without gain
    python launch/finetune_llm.py --config configs/adapters/debug.yaml train.steps=2000 train.eval_every=50 \
        train.patience=5 data.val_groups=1
    # few-shot: N labelled samples of one unseen configuration, starting from a fine-tuned checkpoint
    python launch/finetune_llm.py --config configs/adapters/debug.yaml train.init_from=runs/finetune_llm/debug/final \
        train.few_shot=16 data.systems=[] data.families=[configs/systems/det_unseen.yaml] \
        data.system_names=[NAME] train.out_dir=runs/finetune_llm/debug_fewshot

Overrides use dotted keys of ``adapters_llm.config.FinetuneConfig``. Results go to ``train.out_dir``
(``final/adapter.safetensors`` with ``config.yaml``, TensorBoard events under ``tb/``, ``metrics.json``, and
``curve.json`` with validation). Training runs on the DeepSpeed engine (ZeRO stage ``deepspeed.zero_stage``); under
the launcher the ranks share each global batch ``train.batch_size``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from icwm.config import entry_config  # noqa: E402


def config_class() -> type:
    from adapters_llm.config import FinetuneConfig
    return FinetuneConfig


def main(argv: list[str] | None = None) -> int:
    """Parse ``--config PATH key=value ...``, fine-tune, print the summary line."""
    cfg = entry_config(sys.argv[1:] if argv is None else argv, __doc__, "finetune_llm", config_class)
    if isinstance(cfg, int):
        return cfg
    from icwm.config import check_path, report
    try:
        if cfg.train.init_from:
            check_path(cfg.train.init_from, "train.init_from")
        from adapters_llm.run import finetune
        s = finetune(cfg)
    except (ValueError, OSError) as err:   # the message names the field or path
        return report("finetune_llm", err)
    drops = ", ".join(f"{t} {s['train_loss_before'][t]:.4g} -> {v:.4g}" for t, v in s["train_loss_after"].items())
    c = s["curve"]
    stop = f"; stopped at step {c['steps_run']} ({c['stopped']}, best step {c['best_step']})" if c else ""
    print(f"[finetune_llm] {cfg.adapter.peft}: training-pool loss {drops}; trainable {s['trainable']} / total "
          f"{s['total']}, {s['step_s']:.3g} s/step, checkpoint {s['checkpoint']}{stop}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
