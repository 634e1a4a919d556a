"""Fine-tune an LLM backbone on the wireless tasks (LoRA, MoE-LoRA, NF4 LoftQ / naive, frozen, no-LLM).

    python launch/finetune_llm.py --config configs/adapters/debug.yaml [key=value ...]
    python launch/finetune_llm.py --config configs/adapters/smollm2_lora.yaml train.steps=200
    deepspeed launch/finetune_llm.py --config configs/adapters/gpt2_lora.yaml backbone.path=/models/gpt2
    python launch/finetune_llm.py --config configs/adapters/llm4wm_moe_lora.yaml \
        train.few_shot=32 train.init_from=runs/llm4wm/final data.families=[configs/systems/unseen.yaml]

Overrides use dotted keys of ``adapters_llm.config.FinetuneConfig``. Results go to ``train.out_dir``
(``final/adapter.safetensors`` with ``config.yaml``, TensorBoard events under ``tb/``, ``metrics.json``).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from icwm.config import load_config, split_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse ``--config PATH key=value ...``, fine-tune, print the summary line."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    path, overrides = split_cli(argv)
    try:
        from adapters_llm.config import FinetuneConfig
        cfg = load_config(FinetuneConfig, path, overrides)
    except ValueError as err:
        print(f"finetune_llm: {err}", file=sys.stderr)
        return 2
    from adapters_llm.run import finetune
    s = finetune(cfg)
    print(f"[finetune_llm] {cfg.adapter.peft}: loss {s['first_loss']:.4g} -> {s['final_loss']:.4g}, "
          f"trainable {s['trainable']} / total {s['total']}, checkpoint {s['checkpoint']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
