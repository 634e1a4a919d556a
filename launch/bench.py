"""Benchmarks: ``python launch/bench.py [--suite data,latent,solvers,train,infer,llm] [--quick] [--out bench.json]``.

``--model DIR`` passes a model directory to the suites that load one (default: the shipped model).

Each suite is a module ``icwm.bench.<suite>`` with ``run(quick) -> list[dict]`` (and ``model`` when it takes one);
ratios are measured side by side in one process. Writes one JSON (rows + machine facts) and the same table as
Markdown beside it (``--out`` with ``.md``).
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

SUITES = {"data": ("channels", "data"), "latent": ("latent",), "solvers": ("solvers",), "train": ("train",),
          "infer": ("infer",), "llm": ("llm",)}


def machine() -> dict:
    """Facts needed to read the figures: CPU, threads, GPU, versions."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"host": platform.node(), "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def table(rows: list[dict]) -> str:
    """Markdown table of the rows' name, value, unit, target and whether it was met."""
    lines = ["| suite | name | value | unit | target | met |", "|---|---|---|---|---|---|"]
    for r in rows:
        v = r.get("value", r.get("figures"))
        if isinstance(v, dict):   # several figures in one row (e.g. the llm suite)
            v = ", ".join(f"{k} {x:.4g}" if isinstance(x, float) else f"{k} {x}" for k, x in v.items())
        v = f"{v:.4g}" if isinstance(v, float) else v
        lines.append(f"| {r.get('suite')} | {r.get('name')} | {v} | {r.get('unit', '')} | {r.get('target', '')} "
                     f"| {r.get('met', '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default=",".join(SUITES), help=f"comma list of {sorted(SUITES)}")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--out", default="outputs/bench.json")
    ap.add_argument("--model", default=None, help="model directory for the suites that load one (default: shipped)")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.suite.split(",") if s.strip()]
    unknown = [s for s in names if s not in SUITES]
    if unknown:
        ap.error(f"--suite: unknown {unknown}; expected some of {sorted(SUITES)}")
    if not names:
        ap.error(f"--suite: expected at least one of {sorted(SUITES)}, got {args.suite!r}")
    runs = {mod: importlib.import_module(f"icwm.bench.{mod}").run for suite in names for mod in SUITES[suite]}
    takes_model = {mod for mod, run in runs.items() if "model" in inspect.signature(run).parameters}
    if args.model is not None:
        if not takes_model:
            ap.error(f"--model: expected with a suite that loads a model (none of {names} does)")
        if not (Path(args.model) / "config.yaml").is_file():
            ap.error(f"--model: expected a model directory with config.yaml (save_pretrained), got {args.model!r}")
    out = Path(args.out)
    for path in (out, out.with_suffix(".md")):   # fail before the (long) suites run, not after
        if path.is_dir():
            print(f"bench: --out: expected a file path, got a directory ({path})", file=sys.stderr)
            return 2
    rows = []
    for suite in names:
        for mod in SUITES[suite]:
            print(f"[bench] {suite}/{mod} ...", flush=True)
            extra = {"model": args.model} if args.model and mod in takes_model else {}
            for row in runs[mod](quick=args.quick, **extra):
                rows.append({"suite": suite, **row})
    try:
        md = write(out, rows, args.quick, argv)
    except OSError as err:
        print(f"bench: cannot write the results: {err.strerror or err} ({err.filename or out})", file=sys.stderr)
        return 2
    print(table(rows))
    print(f"[bench] wrote {out} and {md}")
    return 0


def write(out: Path, rows: list[dict], quick: bool, argv: list[str] | None) -> Path:
    """Write the JSON to ``out`` and the Markdown table beside it; returns the Markdown path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "quick": quick, "rows": rows}, indent=2, default=str))
    md = out.with_suffix(".md")
    facts = ", ".join(f"{k} {v}" for k, v in machine().items())
    md.write_text(f"# Benchmarks\n\nCommand: `python launch/bench.py {' '.join(argv or sys.argv[1:])}`\n\n"
                  f"Machine: {facts}\n\n{table(rows)}\n")
    return md


if __name__ == "__main__":
    sys.exit(main())
