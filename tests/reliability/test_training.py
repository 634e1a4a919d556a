"""Nothing silent in training: a NaN label stops the run naming step, task and batch (or is skipped and counted),
non-finite gradients and models are never applied or saved, checkpoints load weights-only (a planted pickle is
refused), a corrupt latest checkpoint falls back to the previous one, one run per out_dir, a rank stops when its
launcher is killed, and model.n_beams must match the data's bf codebook."""
from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from icwm.config import load_config
from icwm.train import checkpoint as ckpt
from icwm.train.config import PretrainConfig

ROOT = Path(__file__).resolve().parents[2]
DEBUG = ROOT / "configs" / "pretrain" / "debug.yaml"
TASKS = ("pre_sr", "pre_mm", "det", "ce", "cp", "pf", "bf", "de", "pe")
ONLY_DET = [f"data.task_weights.{t}={1.0 if t == 'det' else 0.0}" for t in TASKS]


def cfg_with(out: Path, *overrides: str) -> PretrainConfig:
    """The debug config, det only, 2 episodes of k <= 2, no export, no progress bar, into ``out``."""
    return load_config(PretrainConfig, DEBUG, [f"train.out_dir={out}", "train.progress=false", "train.export=false",
                                               "data.batch_size=2", "data.k_max=2", "train.log_every=1",
                                               *ONLY_DET, *overrides])


def trainer(out: Path, *overrides: str):
    from icwm.train.loop import Trainer
    return Trainer(cfg_with(out, *overrides))


@pytest.fixture
def nan_det(monkeypatch):
    """Make det's generate put one NaN label into the calls whose (0-based) numbers are in the returned set."""
    from icwm.tasks import det
    bad_calls, calls, generate = set(), [0], det.generate

    def patched(*args, **kwargs):
        out = generate(*args, **kwargs)
        if calls[0] in bad_calls:
            out["x"][0, 0, 0, 0] = complex("nan")
        calls[0] += 1
        return out
    monkeypatch.setattr(det, "generate", patched)
    return bad_calls


def test_nan_label_stops_naming_step_task_and_batch(tmp_path, nan_det):
    from icwm.train.loop import NonFiniteError
    nan_det.add(2)                                                       # the third batch: step 3
    with pytest.raises(NonFiniteError, match=r"non-finite loss at step 3: task 'det', batch 2 of epoch 0 "
                       r"\(generated for system 'debug_uma', k=\d\); non-finite values in 'x' \(episodes \[0\]\)"):
        trainer(tmp_path / "run", "train.steps=4", "train.ckpt_every=0").run()
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "model").exists()


def test_nan_label_skip_finishes_counts_and_stays_finite(tmp_path, nan_det, capsys):
    nan_det.update({1, 3})
    tr = trainer(tmp_path / "run", "train.steps=4", "train.ckpt_every=0", "train.nonfinite=skip")
    summary = tr.run()
    assert summary["step"] == 4 and summary["skipped"] == 2
    assert all(torch.isfinite(p).all() for p in tr.engine.module.parameters())
    state = json.loads((ckpt.ckpt_root(tmp_path / "run") / "step_00000004" / ckpt.STATE).read_text())
    assert state["skipped"] == 2
    assert capsys.readouterr().err.count("skipped: non-finite loss at step") == 2
    assert all(math.isfinite(h["loss/weighted"]) for h in summary["history"] if "loss/weighted" in h)


def test_skip_has_a_limit(tmp_path, nan_det):
    from icwm.train.loop import NonFiniteError
    nan_det.update(range(100))
    with pytest.raises(NonFiniteError, match="more than train.max_skipped=3"):
        trainer(tmp_path / "run", "train.steps=2", "train.nonfinite=skip", "train.max_skipped=3").run()


def test_nonfinite_gradient_is_never_applied(tmp_path):
    """ZeRO 0 clips with torch: an inf gradient returns a non-finite norm and leaves every parameter unchanged."""
    from icwm.train.engine import build_engine, init_distributed, lr_lambda, optimizer_step
    init_distributed()
    cfg = cfg_with(tmp_path, "optim.weight_decay=0.1", "optim.warmup_steps=0", "train.steps=3")
    model = torch.nn.Linear(3, 2)
    engine, _ = build_engine(model, cfg)
    x = torch.randn(4, 3)
    engine.backward(engine(x).pow(2).mean())
    before = [p.detach().clone() for p in engine.module.parameters()]
    engine.module.weight.grad[0, 0] = float("inf")
    assert not math.isfinite(optimizer_step(engine, cfg.optim.clip, True))
    assert all(torch.equal(a, p) for a, p in zip(before, engine.module.parameters()))
    assert engine.get_lr()[0] == pytest.approx(cfg.optim.lr * lr_lambda(cfg.optim, 3)(1))   # schedule unharmed
    engine.backward(engine(x).pow(2).mean())                            # the next, finite step is applied as usual
    assert math.isfinite(optimizer_step(engine, cfg.optim.clip, True))
    assert not torch.equal(before[0], engine.module.weight)


def test_nonfinite_model_is_never_saved(tmp_path):
    from icwm.train.loop import NonFiniteError
    tr = trainer(tmp_path / "run", "train.steps=1")
    with torch.no_grad():
        next(tr.engine.module.parameters())[0] = float("nan")
    with pytest.raises(NonFiniteError, match="non-finite model at step 0: parameters .* not saving a checkpoint"):
        tr.save()
    with pytest.raises(NonFiniteError, match="not exporting"):
        tr.export()
    tr.close()
    assert not ckpt.ckpt_root(tmp_path / "run").exists() and not (tmp_path / "run" / "model").exists()


class Planted:
    """A pickle that would create ``marker`` when unpickled (as a tampered checkpoint file would run code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def _replace_file(ckpt_dir: Path, rel: str, data: bytes) -> None:
    """Overwrite ``rel`` in a checkpoint and update its manifest (an attacker who covers their tracks)."""
    (ckpt_dir / rel).write_bytes(data)
    manifest = json.loads((ckpt_dir / ckpt.MANIFEST).read_text())
    manifest[rel] = len(data)
    (ckpt_dir / ckpt.MANIFEST).write_text(json.dumps(manifest))


def test_planted_pickle_in_checkpoint_is_refused(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "pwned"
    trainer(out, "train.steps=2", "train.ckpt_every=2").run()
    last = ckpt.ckpt_root(out) / "step_00000002"
    _replace_file(last, "engine/mp_rank_00_model_states.pt", pickle.dumps(Planted(marker)))
    tr = trainer(out, "train.steps=4", "train.resume=auto")
    with pytest.raises(ckpt.UnsafeCheckpointError, match=r"mp_rank_00_model_states.pt: refused, it holds objects"):
        tr.run()
    assert not marker.exists()


def test_zero1_checkpoint_resumes_weights_only(tmp_path, monkeypatch):
    """DeepSpeed's own ZeRO-1 state (loss scaler, stage enum, fragment addresses) loads with weights_only=True."""
    out = tmp_path / "run"
    trainer(out, "train.steps=2", "train.ckpt_every=2", "deepspeed.zero_stage=1").run()
    load, modes = torch.load, []

    def spy(*args, **kwargs):
        modes.append(kwargs.get("weights_only"))
        return load(*args, **kwargs)
    monkeypatch.setattr(torch, "load", spy)
    tr = trainer(out, "train.steps=3", "deepspeed.zero_stage=1")
    assert tr.resume() == ckpt.ckpt_root(out) / "step_00000002" and tr.state.step == 2
    tr.close()
    assert len(modes) >= 3 and all(m is True for m in modes)           # model, optimiser partition, rank state


def test_corrupt_latest_checkpoint_falls_back_with_a_warning(tmp_path, capsys):
    out = tmp_path / "run"
    trainer(out, "train.steps=4", "train.ckpt_every=2", "train.keep_last=0").run()
    root = ckpt.ckpt_root(out)
    model_file = root / "step_00000004" / "engine" / "mp_rank_00_model_states.pt"
    model_file.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    tr = trainer(out, "train.steps=4")
    assert tr.resume() == root / "step_00000002" and tr.state.step == 2
    tr.close()
    err = capsys.readouterr().err
    assert (f"checkpoint {root / 'step_00000004'}: file engine/mp_rank_00_model_states.pt has" in err
            and f"falling back to the previous good checkpoint {root / 'step_00000002'}" in err)


def test_no_good_checkpoint_is_a_clear_error(tmp_path):
    out = tmp_path / "run"
    trainer(out, "train.steps=4", "train.ckpt_every=2", "train.keep_last=0").run()
    root = ckpt.ckpt_root(out)
    (root / "step_00000004" / ckpt.RANKS / "rank00000.pt").unlink()
    (root / "step_00000002" / "engine" / "mp_rank_00_model_states.pt").write_bytes(b"PK\x03\x04 truncated")
    (root / "step_00000002" / ckpt.MANIFEST).unlink()                  # an older layout: only the load can tell
    tr = trainer(out, "train.steps=4")
    with pytest.raises(ckpt.CorruptCheckpointError, match=r"train.resume: no loadable checkpoint in .*checkpoints "
                       r"\(.*step_00000004: file rank_states/rank00000.pt is missing; .*step_00000002.*unreadable"):
        tr.resume()
    tr.close()


def test_second_run_into_the_same_out_dir_is_refused(tmp_path):
    out = tmp_path / "run"
    held = ckpt.RunLock(out).acquire()
    with pytest.raises(ckpt.RunLockedError, match=f"another run holds {out / '.lock'} \\(pid {os.getpid()}\\)"):
        trainer(out, "train.steps=1")
    held.release()
    ckpt.RunLock(out).acquire().release()                              # free again once released


def test_stale_lock_of_a_dead_run_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / ckpt.LOCK
    lock.write_text(f"{dead.pid}\n")                                   # left by a killed run: no flock held
    ckpt.RunLock(tmp_path).acquire().release()
    import fcntl
    with open(lock, "a+") as leftover:                                 # held by a forked leftover of a dead run
        fcntl.flock(leftover, fcntl.LOCK_EX | fcntl.LOCK_NB)
        leftover.seek(0), leftover.truncate(), leftover.write(f"{dead.pid}\n"), leftover.flush()
        taken = ckpt.RunLock(tmp_path).acquire()
        assert lock.read_text() == f"{os.getpid()}\n"
        taken.release()


FAKE_LAUNCHER = """
import subprocess, sys, time
role, rest = sys.argv[1], sys.argv[2:]
cmd = [sys.executable, sys.argv[0], "launch", *rest] if role == "runner" else [sys.executable, *rest]
print(subprocess.Popen(cmd).pid, flush=True)
time.sleep(600)
"""
FAKE_RANK = """
import sys, time
from pathlib import Path
from icwm.train.engine import LauncherWatch
watch, marker = LauncherWatch(), Path(sys.argv[1])
Path(f"{marker}.ready").write_text(str(len(watch.links)))
while watch.gone() is None:
    time.sleep(0.05)
marker.write_text(str(watch.gone()))
"""


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="launcher watch needs Linux /proc")
@pytest.mark.parametrize("kill", ["launch", "runner"])
def test_rank_notices_its_launcher_was_killed(tmp_path, kill):
    """runner -> launch -> rank, as ``deepspeed`` starts them (the script's name marks them as launchers); after a
    SIGKILL of either launcher process, the rank's watch fires (the training loop then stops: LauncherGone)."""
    launcher, rank, marker = tmp_path / "deepspeed_fake.py", tmp_path / "rank.py", tmp_path / "gone"
    launcher.write_text(FAKE_LAUNCHER)
    rank.write_text(FAKE_RANK)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    top = subprocess.Popen([sys.executable, str(launcher), "runner", str(rank), str(marker)], stdout=subprocess.PIPE,
                           text=True, env=env)
    pids = [top.pid]
    try:
        pids.append(int(top.stdout.readline()))                           # the runner's child: "launch"
        t0 = time.time()
        while not Path(f"{marker}.ready").exists():
            assert time.time() - t0 < 120, "the fake rank did not start"
            time.sleep(0.05)
        assert Path(f"{marker}.ready").read_text() == "2"               # both launcher processes are watched
        victim = pids[0] if kill == "runner" else pids[1]
        os.kill(victim, signal.SIGKILL)
        while not marker.exists():
            assert time.time() - t0 < 120, "the rank did not notice its launcher died"
            time.sleep(0.05)
        assert marker.read_text() == str(victim)
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        top.wait()


def _bf_shards(out: Path) -> list[str]:
    """A one-system bf shard set (the debug data config, codebook 32) in ``out``; the pretrain overrides to read it."""
    from icwm.data.config import DataConfig
    from icwm.data.shards import write_shards
    write_shards(load_config(DataConfig, ROOT / "configs" / "data" / "debug.yaml", [f"out_dir={out}", "tasks=[bf]"]),
                 progress=False)
    return ["data.source=shards", f"data.shards_dir={out}"]


@pytest.mark.parametrize("source", ["generate", "shards"])
def test_model_n_beams_must_match_the_data_codebook(tmp_path, source):
    only_bf = [f"data.task_weights.{t}={1.0 if t == 'bf' else 0.0}" for t in TASKS]
    data = _bf_shards(tmp_path / "shards") if source == "shards" else []
    origin = r" \(shard 'train-bf-debug_uma-00000.tar'\)" if source == "shards" else ""
    with pytest.raises(ValueError, match=r"model.n_beams: expected the bf data's codebook size, 32 beams for system "
                       rf"'debug_uma'{origin} \(beam_gain's last dim\), got 64"):
        trainer(tmp_path / "run", "model.n_beams=64", *only_bf, *data)
    assert not (tmp_path / "run").exists()                              # refused before anything was written


def test_held_out_data_without_a_training_task_is_refused_before_training(tmp_path):
    """eval_data serving bf only, training det: refused at start naming eval_data (it failed after the first
    steps, blaming data.task_weights)."""
    shards = tmp_path / "shards"
    _bf_shards(shards)
    with pytest.raises(ValueError, match=r"eval_data: expected a held-out source serving every training task "
                       r"\['det'\], got \"one without \['det'\]\""):
        trainer(tmp_path / "run", "train.eval_every=1", f"eval_data={{source: shards, shards_dir: {shards}, k_max: 2}}")
    assert not (tmp_path / "run").exists()
