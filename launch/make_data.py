"""Generate webdataset shards: ``python launch/make_data.py --config configs/data/<name>.yaml [key=value ...]``.

Writes ``<out_dir>/*.tar`` and ``<out_dir>/index.json`` (resumable: complete shards are skipped), verifies
the result and prints a summary. Example: ``python launch/make_data.py --config configs/data/debug.yaml
out_dir=/tmp/icwm_debug workers=2``.
"""
from __future__ import annotations

import sys
from typing import Sequence

from icwm.config import load_cli, to_yaml
from icwm.data.config import DataConfig
from icwm.data.shards import WriteSummary, verify, write_shards


def summary_text(cfg: DataConfig, s: WriteSummary) -> str:
    """Human-readable summary of a run."""
    rate = s.samples / s.seconds if s.seconds > 0 else float("nan")
    return (f"make_data: {cfg.split} split -> {cfg.out_dir}\n"
            f"  shards written {s.written}, skipped (complete) {s.skipped}\n"
            f"  groups {s.groups}, samples {s.samples}, {s.bytes / 2**20:.2f} MiB\n"
            f"  time {s.seconds:.1f} s ({rate:.1f} samples/s over this run's total)\n"
            f"  index {s.index_path}")


def main(argv: Sequence[str] | None = None) -> WriteSummary:
    """Parse the config, write and verify the shards, print the summary.

    Args:
        argv: command-line arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The ``WriteSummary`` of the run.
    """
    cfg = load_cli(DataConfig, sys.argv[1:] if argv is None else argv)
    print(to_yaml(cfg), flush=True)
    summary = write_shards(cfg)
    verify(cfg.out_dir)
    print(summary_text(cfg, summary), flush=True)
    return summary


if __name__ == "__main__":
    try:
        main()
    except ValueError as err:   # bad config: the message names the field; nothing was written
        print(f"make_data: {err}", file=sys.stderr)
        sys.exit(2)
