"""scripts/measure_bf_votes.py: runs on the shipped model and prints a paired row per metric and j."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_measure_bf_votes_smoke(capsys):
    spec = importlib.util.spec_from_file_location("votes", ROOT / "scripts" / "measure_bf_votes.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # the script's dataclass looks its module up there
    spec.loader.exec_module(mod)
    assert mod.main(["episodes=1", "chunk=1"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if "paired change" in ln]
    assert len(rows) == 2 * len(mod.JS) and all("(n = 3)" in r for r in rows)    # 3 seen dual systems x 1 episode
