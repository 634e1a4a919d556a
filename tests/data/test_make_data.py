"""make_data entry point: tiny end-to-end run (fake task), resume, and every configs/data YAML loads."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_shards import fake_get  # noqa: E402

import icwm.tasks  # noqa: E402
from icwm.config import load_config  # noqa: E402
from icwm.data.config import DataConfig  # noqa: E402
from icwm.data.shards import load_index, verify  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DATA_CONFIGS = sorted((ROOT / "configs" / "data").glob("*.yaml"))


def load_script():
    spec = importlib.util.spec_from_file_location("make_data", ROOT / "launch" / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_data_debug_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(icwm.tasks, "get", fake_get)
    make_data = load_script()
    argv = ["--config", str(ROOT / "configs/data/debug.yaml"), f"out_dir={tmp_path}", "groups_per_system=3"]
    first = make_data.main(argv)
    out = capsys.readouterr().out
    assert first.written == 18 and first.skipped == 0 and first.samples == 9 * 3 * 8
    assert "shards written 18, skipped (complete) 0" in out and f"samples {9 * 3 * 8}" in out
    index = load_index(tmp_path)
    assert index["config"]["groups_per_system"] == 3 and len(index["shards"]) == 18
    assert {e["task"] for e in index["shards"]} == set(icwm.tasks.TASKS) and verify(tmp_path) == {}
    second = make_data.main(argv)
    assert second.written == 0 and second.skipped == 18
    assert "shards written 0, skipped (complete) 18" in capsys.readouterr().out


def test_make_data_rejects_bad_override(tmp_path):
    with pytest.raises(ValueError, match="samples_per_grup"):
        load_script().main(["--config", str(ROOT / "configs/data/debug.yaml"), "samples_per_grup=3"])


@pytest.mark.parametrize("path", DATA_CONFIGS, ids=[p.stem for p in DATA_CONFIGS])
def test_every_data_yaml_loads(path):
    cfg = load_config(DataConfig, path)
    assert cfg.tasks and all(t in icwm.tasks.TASKS for t in cfg.tasks)
    if path.stem == "debug":
        assert len(cfg.load_systems()) == 1 and not cfg.families


def test_expected_data_yamls_present():
    assert {p.stem for p in DATA_CONFIGS} >= {"debug", "seen", "unseen", "zheng_dai", "llm4wm"}
