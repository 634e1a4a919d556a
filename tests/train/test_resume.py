"""Checkpoint/resume: a run SIGKILLed after a checkpoint and resumed ends bit-identical to an uninterrupted run;
resume selection only ever picks complete checkpoints; RNG states round-trip."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from icwm.train import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[2]
DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT")
RUN = ["train.steps=10", "train.ckpt_every=3", "train.log_every=1", "train.progress=false", "train.keep_last=0",
       "data.batch_size=2", "data.k_max=2"]


def clean_env() -> dict:
    """This process's environment without torch.distributed variables (a child starts its own group)."""
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    env["OMP_NUM_THREADS"] = "1"
    return env


def cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "launch" / "pretrain.py"), "--config",
            str(ROOT / "configs" / "pretrain" / "debug.yaml"), f"train.out_dir={out}", *RUN, *extra]


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    return load_file(str(out / "model" / "model.safetensors"))


def test_sigkill_then_resume_is_bit_exact(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    r = subprocess.run(cmd(a), env=clean_env(), cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    proc = subprocess.Popen(cmd(b), env=clean_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer, t0 = b / "checkpoints" / "latest", time.time()
    while not pointer.exists():
        assert proc.poll() is None, "the run ended before writing its first checkpoint"
        assert time.time() - t0 < 240
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed_at = json.loads((ckpt.find_resume("auto", b) / ckpt.STATE).read_text())["step"]
    assert 3 <= killed_at < 10 and not (b / "model").exists()
    r = subprocess.run(cmd(b, "train.resume=auto"), env=clean_env(), cwd=ROOT, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stdout
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys() and len(wa) > 0
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    sa = json.loads((a / "checkpoints" / "step_00000010" / ckpt.STATE).read_text())
    sb = json.loads((b / "checkpoints" / "step_00000010" / ckpt.STATE).read_text())
    assert sa["dwa"] == sb["dwa"] and sa["samples"] == sb["samples"] and sa["tokens"] == sb["tokens"]


def _fake_ckpt(root: Path, step: int, complete: bool = True) -> Path:
    d = root / ckpt.step_name(step)
    (d / ckpt.RANKS).mkdir(parents=True)
    if complete:
        (d / ckpt.STATE).write_text(json.dumps({"step": step, "world_size": 1}))
    return d


def test_resume_selection_only_picks_complete_checkpoints(tmp_path):
    root = ckpt.ckpt_root(tmp_path)
    assert ckpt.find_resume("auto", tmp_path) is None               # nothing yet: fresh start
    s3, s6 = _fake_ckpt(root, 3), _fake_ckpt(root, 6)
    _fake_ckpt(root, 9, complete=False)                               # killed before its state was written
    (root / ".tmp-step_00000012").mkdir()                             # killed mid-save
    assert ckpt.find_resume("auto", tmp_path) == s6                   # no pointer: newest complete
    (root / ckpt.LATEST).write_text("step_00000003\n")
    assert ckpt.find_resume("auto", tmp_path) == s3                   # the pointer wins
    (root / ckpt.LATEST).write_text("step_00000009\n")
    assert ckpt.find_resume("auto", tmp_path) == s6                   # pointer to an incomplete one: fall back
    assert ckpt.find_resume("none", tmp_path) is None
    assert ckpt.find_resume(str(s3), tmp_path) == s3
    with pytest.raises(ValueError, match="train.resume"):
        ckpt.find_resume(str(root / "step_00000009"), tmp_path)
    assert [p.name for p in ckpt.complete_checkpoints(root)] == ["step_00000003", "step_00000006"]


def test_resume_with_another_world_size_is_refused(tmp_path):
    d = _fake_ckpt(ckpt.ckpt_root(tmp_path), 3)
    (d / ckpt.STATE).write_text(json.dumps({"step": 3, "world_size": 5}))
    with pytest.raises(ValueError, match="train.resume"):
        ckpt.load_checkpoint(engine=None, path=d)


def test_rng_state_round_trip(tmp_path):
    state = ckpt.rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(7), random.random()
    ckpt.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_resume_with_another_model_config_names_the_fields(tmp_path):
    """A checkpoint saved with another model config is refused before DeepSpeed loads it, naming each field that
    differs (it was an unreadable-state error naming none); the same config passes the check."""
    import types

    from omegaconf import OmegaConf

    from icwm.model import ModelConfig
    cfg = ModelConfig.flavour("debug")
    d = _fake_ckpt(ckpt.ckpt_root(tmp_path), 3)
    saved = OmegaConf.to_container(OmegaConf.structured(cfg))
    (d / ckpt.CONFIG).write_text(OmegaConf.to_yaml({"model": saved, "train": {"steps": 10}}))
    engine = types.SimpleNamespace(module=types.SimpleNamespace(cfg=cfg))
    ckpt.check_same_model(engine, d)
    engine.module.cfg = ModelConfig.flavour("debug", d_model=64, icr=False)
    with pytest.raises(ValueError, match=r"train\.resume.*model\.d_model=32 \(now 64\).*model\.icr=True \(now False\)"):
        ckpt.load_checkpoint(engine, d)
