"""Generate webdataset shards: ``python launch/make_data.py --config configs/data/<name>.yaml [key=value ...]``.

Writes ``<out_dir>/*.tar`` and ``<out_dir>/index.json`` (resumable: complete shards are skipped), verifies
the result and prints a summary. Example: ``python launch/make_data.py --config configs/data/debug.yaml
out_dir=/tmp/icwm_debug workers=2``. Under torchrun (or the DeepSpeed launcher) the ranks split the shards
(``out_dir`` shared by all nodes); rank 0 merges the index and verifies; the files are the same as one process's.
"""
from __future__ import annotations

import gc
import os
import sys
from datetime import timedelta
from typing import Sequence

import torch.distributed as dist

from icwm.config import load_cli, report, to_yaml
from icwm.data.config import DataConfig
from icwm.data.shards import Gather, RankError, WriteSummary, verify, write_shards


def summary_text(cfg: DataConfig, s: WriteSummary) -> str:
    """Human-readable summary of a run (with several ranks: the shards each one wrote)."""
    rate = s.samples / s.seconds if s.seconds > 0 else float("nan")
    by_rank = ", ".join(f"rank {r}: {n}" for r, n in enumerate(s.written_by_rank))
    return (f"make_data: {cfg.split} split -> {cfg.out_dir}\n"
            f"  shards written {s.written}{f' ({by_rank})' if len(s.written_by_rank) > 1 else ''}, "
            f"skipped (complete) {s.skipped}\n"
            f"  groups {s.groups}, samples {s.samples}, {s.bytes / 2**20:.2f} MiB\n"
            f"  time {s.seconds:.1f} s ({rate:.1f} samples/s over this run's total)\n"
            f"  index {s.index_path}")


def all_gather(obj: object) -> list:
    """``obj`` of every rank, in rank order (gloo process group)."""
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def init_ranks(timeout_s: float) -> tuple[int, int, Gather | None]:
    """(rank, world size, all-gather) from the launcher's environment (RANK, WORLD_SIZE, MASTER_ADDR,
    MASTER_PORT: torchrun, DeepSpeed); (0, 1, None) without one. Collectives fail after ``timeout_s``."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1, None
    dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size(), all_gather


def main(argv: Sequence[str] | None = None) -> WriteSummary:
    """Parse the config, write the shards (this rank's share), verify (rank 0) and print the summary (rank 0).

    Args:
        argv: command-line arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The ``WriteSummary`` of the run (over all ranks).
    """
    cfg = load_cli(DataConfig, sys.argv[1:] if argv is None else argv)
    rank, world_size, gather = init_ranks(cfg.rank_timeout_s)
    try:
        if rank == 0:
            print(to_yaml(cfg), flush=True)
        summary = write_shards(cfg, progress=rank == 0, rank=rank, world_size=world_size, gather=gather)
        if rank == 0:
            verify(cfg.out_dir)
            print(summary_text(cfg, summary), flush=True)
        if gather is not None:        # every rank tears its group down together: a rank that destroyed its gloo
            gather(None)              # group while rank 0 still verified aborted once at exit (SIGABRT, 2026-12-03)
    finally:
        if gather is not None and dist.is_initialized():   # only the group init_ranks made (not a caller's)
            dist.destroy_process_group()
            gc.collect()      # free it while the interpreter is alive: at its exit gloo's threads could abort a rank
    return summary


def run(argv: Sequence[str] | None = None) -> int:
    """``main`` with its errors as exit statuses: 2 for a bad config or path (``make_data: <what> (<path>)`` on
    stderr; nothing half-written is left), 1 when some rank failed (every rank stops with its error)."""
    try:
        main(argv)
    except RankError as err:
        print(f"make_data: {err}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as err:
        return report("make_data", err)
    return 0


if __name__ == "__main__":
    sys.exit(run())
