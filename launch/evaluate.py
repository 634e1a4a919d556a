"""Evaluate the native model against the classical baselines on seen / unseen configurations.

    python launch/evaluate.py --config configs/eval/<name>.yaml [key=value ...]
    (e.g. model=none for baselines only, model=PATH, tasks=[pre_sr,det], ks=[0,4,16], device=auto)

Writes to ``out_dir``: results.csv, report.md, <task>.png and the resolved config.yaml; prints the targets.
Files are written to a temporary directory first and moved in only when all are complete.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from icwm.config import check_device, check_path, load_cli, report, to_yaml
from icwm.eval.config import EvalConfig
from icwm.eval.plots import plot_all
from icwm.eval.report import markdown, print_targets, targets, write_csv
from icwm.eval.runner import load_families, load_model, resolve_device, run


def write_outputs(out_dir: Path, files: dict[str, str], res, cfg: EvalConfig) -> None:
    """Write results.csv, report.md, config.yaml and the PNGs into ``out_dir`` (via a temporary directory)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".eval-tmp-", dir=out_dir))
    try:
        write_csv(res.rows, tmp / "results.csv")
        for name, text in files.items():
            (tmp / name).write_text(text)
        plot_all(res, tmp)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def evaluate(cfg: EvalConfig) -> Path:
    """Run the evaluation of ``cfg``, write its files and print the targets; returns the output directory."""
    families = load_families(cfg)
    model, desc = load_model(cfg.model, resolve_device(cfg.device))
    print(f"[eval] model: {desc}; families: {list(families)}; tasks: {cfg.tasks}", flush=True)
    res = run(cfg, model, families)
    res.model = desc
    tgts = targets(res, cfg.targets)
    out = Path(cfg.out_dir)
    write_outputs(out, {"report.md": markdown(res, tgts), "config.yaml": to_yaml(cfg)}, res, cfg)
    print(print_targets(tgts))
    print(f"[eval] wrote {out}/results.csv, report.md, config.yaml and {len(set(r['task'] for r in res.rows))} PNG")
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse ``--config PATH key=value ...`` and evaluate; a bad config, path or device gives exit status 2."""
    try:
        cfg = load_cli(EvalConfig, sys.argv[1:] if argv is None else argv)
        check_device(cfg.device)
        if cfg.model not in ("none", "shipped"):
            check_path(cfg.model, "model")
        evaluate(cfg)
    except (ValueError, OSError) as err:   # the message names the field or path; nothing half-written is left
        return report("evaluate", err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
