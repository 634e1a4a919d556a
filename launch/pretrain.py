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


def check_paths(cfg) -> None:
    """Fail early, naming the field and path, when a directory the run reads does not exist."""
    from icwm.config import check_path
    for name, data in (("data", cfg.data), ("eval_data", cfg.eval_data)):
        if data is not None and data.source == "shards":
            check_path(Path(data.shards_dir) / "index.json", f"{name}.shards_dir", "file")
    if cfg.train.resume not in ("auto", "none"):
        check_path(cfg.train.resume, "train.resume")
    if cfg.train.init_from:
        check_path(cfg.train.init_from, "train.init_from")


def main(argv: list[str] | None = None) -> int:
    """Parse ``--config PATH key=value ...``, train, and print where the results are (exit 2 on a bad input)."""
    cfg = entry_config(sys.argv[1:] if argv is None else argv, __doc__, "pretrain", config_class)
    if isinstance(cfg, int):
        return cfg
    from icwm.config import report
    try:
        check_paths(cfg)
        from icwm.train.loop import pretrain
        summary = pretrain(cfg)
    except (ValueError, OSError) as err:   # bad shards, checkpoint or weights: the message names the path
        return report("pretrain", err)
    if int(os.environ.get("RANK", "0")) == 0:
        last = next((h for h in reversed(summary["history"]) if "loss/weighted" in h), {})
        print(f"[pretrain] done: step {summary['step']}, loss {last.get('loss/weighted', float('nan')):.4g}, "
              f"checkpoint {summary['checkpoint']}, model {summary['model']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
