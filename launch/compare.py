"""Head-to-head comparison: native ICWM (k demos) vs adapted LLMs (zero-shot / N-shot) vs single-task nets vs
classical baselines, on seen, unseen and swept configurations.

    python launch/compare.py --config configs/compare/<name>.yaml [key=value ...]
    (e.g. out_dir=outputs/compare/x, device=auto, tasks=[pre_sr,cp], llm.enabled=false, episodes=32)

Writes to ``out_dir``: results.csv, report.md, plots/*.png, config.yaml, provenance.json, notes.json, llm_runs/, and
with ``ttft.enabled`` ttft.csv (ICL vs test-time fine-tuning on the latent families).
"""
from __future__ import annotations

import sys

from icwm.compare.config import CompareConfig
from icwm.compare.run import run
from icwm.config import check_device, check_path, load_cli, report


def main(argv: list[str] | None = None) -> int:
    """Parse ``--config PATH key=value ...`` and compare; a bad config, path or device gives exit status 2."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = load_cli(CompareConfig, argv)
        check_device(cfg.device)
        if cfg.native.model not in ("none", "shipped"):
            check_path(cfg.native.model, "native.model")
        out = run(cfg, argv)
    except (ValueError, OSError) as err:   # the message names the field or path
        return report("compare", err)
    print(f"[compare] wrote {out}/results.csv, report.md, plots/, config.yaml, provenance.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
