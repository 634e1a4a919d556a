"""Head-to-head comparison: native ICWM (k demos) vs adapted LLMs (zero-shot / N-shot) vs single-task nets vs
classical baselines, on seen, unseen and swept configurations.

    python launch/compare.py --config configs/compare/<name>.yaml [key=value ...]
    (e.g. out_dir=outputs/compare/x, device=auto, tasks=[pre_sr,cp], llm.enabled=false, episodes=32)

Writes to ``out_dir``: results.csv, report.md, plots/*.png, config.yaml, provenance.json, notes.json, llm_runs/.
"""
from __future__ import annotations

import sys

from icwm.compare.config import CompareConfig
from icwm.compare.run import run
from icwm.config import load_cli


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = load_cli(CompareConfig, argv)
    out = run(cfg, argv)
    print(f"[compare] wrote {out}/results.csv, report.md, plots/, config.yaml, provenance.json")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as err:   # bad config: the message names the field
        print(f"compare: {err}", file=sys.stderr)
        sys.exit(2)
