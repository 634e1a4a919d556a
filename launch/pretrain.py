"""Pretrain the native in-context wireless model (ICWM), multi-task and DWA-balanced, with DeepSpeed.

    deepspeed launch/pretrain.py --config configs/pretrain/debug.yaml [key=value ...]
    deepspeed --num_gpus 2 launch/pretrain.py --config configs/pretrain/small.yaml train.steps=2000
    deepspeed --hostfile hosts launch/pretrain.py --config configs/pretrain/base.yaml      # several nodes
    python launch/pretrain.py --config configs/pretrain/debug.yaml                         # one process

On CPUs DeepSpeed runs with gloo ranks. Overrides use dotted keys of ``icwm.train.config.PretrainConfig``
(e.g. ``train.out_dir=outputs/run1 deepspeed.zero_stage=1 data.batch_size=16``); ``train.resume=auto`` (default)
continues the newest complete checkpoint in ``train.out_dir``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from icwm.config import entry_config  # noqa: E402


def config_class() -> type:
    from icwm.train.config import PretrainConfig
    return PretrainConfig


def main(argv: list[str] | None = None) -> int:
    """Parse ``--config PATH key=value ...``, train, and print where the results are."""
    cfg = entry_config(sys.argv[1:] if argv is None else argv, __doc__, "pretrain", config_class)
    if isinstance(cfg, int):
        return cfg
    from icwm.train.loop import pretrain
    summary = pretrain(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        last = next((h for h in reversed(summary["history"]) if "loss/weighted" in h), {})
        print(f"[pretrain] done: step {summary['step']}, loss {last.get('loss/weighted', float('nan')):.4g}, "
              f"checkpoint {summary['checkpoint']}, model {summary['model']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
