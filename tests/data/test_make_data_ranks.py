"""make_data over several ranks: the round-robin split, ranks simulated by threads (byte identity, resume,
an error on one rank), and a real 2-rank torchrun run compared byte for byte with one process."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_make_data import load_script  # noqa: E402
from test_shards import FAKE, fake_generate, fake_get, make_cfg  # noqa: E402

from icwm.data.shards import PART_GLOB, RankError, load_index, rank_share, verify, write_shards  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT")


def shards_in(monkeypatch, run_dir: Path) -> Path:
    """Work in ``run_dir``; shards go to its ``shards/``. Runs compared with each other all use ``out_dir=shards``
    (index.json stores the resolved config, out_dir included)."""
    run_dir.mkdir()
    monkeypatch.chdir(run_dir)
    return run_dir / "shards"


def tree(out_dir: Path) -> dict[str, bytes]:
    """Every file of a directory (hidden ones included): name -> bytes."""
    return {p.name: p.read_bytes() for p in sorted(out_dir.iterdir())}


def run_ranks(cfg, world_size: int, get_task=fake_get) -> list:
    """``write_shards`` on ``world_size`` threads sharing an all-gather; per rank its summary or exception."""
    barrier, slots, results = threading.Barrier(world_size, timeout=60), [None] * world_size, [None] * world_size

    def rank_main(rank: int) -> None:
        def gather(obj):
            slots[rank] = obj
            barrier.wait()
            out = list(slots)
            barrier.wait()                    # nobody overwrites its slot before all have read
            return out
        try:
            results[rank] = write_shards(cfg, get_task, False, rank=rank, world_size=world_size, gather=gather)
        except Exception as err:              # noqa: BLE001 - the test inspects it
            results[rank] = err
    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world_size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a rank hangs"
    return results


@pytest.mark.parametrize("world_size", [1, 2, 3, 5, 8])
def test_rank_share_gives_every_item_to_exactly_one_rank(world_size):
    for n in (0, 1, 7, 8, 23):
        items = [f"shard{i}" for i in range(n)]
        shares = [rank_share(items, r, world_size) for r in range(world_size)]
        assert sorted(x for s in shares for x in s) == sorted(items)        # each exactly once
        assert max(map(len, shares)) - min(map(len, shares)) <= 1           # balanced
        assert all(s == [x for x in items if x in s] for s in shares)       # plan order kept
    with pytest.raises(ValueError, match="rank"):
        rank_share([1, 2], world_size, world_size)
    with pytest.raises(ValueError, match="world_size"):
        rank_share([1, 2], 0, 0)


def test_ranks_match_one_process_and_resume_with_another_world_size(tmp_path, monkeypatch):
    one = shards_in(monkeypatch, tmp_path / "one")
    write_shards(make_cfg("shards"), get_task=fake_get, progress=False)
    out = shards_in(monkeypatch, tmp_path / "three")
    results = run_ranks(make_cfg("shards"), 3)
    assert [r.written_by_rank for r in results] == [[3, 3, 2]] * 3 and results[0].written == 8
    assert tree(out) == tree(one) and len(tree(one)) == 9                   # every tar and index.json, no extras
    names = [e["file"] for e in load_index(out)["shards"]]
    (out / names[1]).unlink()
    (out / names[6]).write_bytes((out / names[6]).read_bytes()[:600])
    kept = (out / names[0]).stat().st_mtime_ns
    results = run_ranks(make_cfg("shards"), 2)
    assert results[0].written == 2 and results[0].skipped == 6 and sum(results[1].written_by_rank) == 2
    assert tree(out) == tree(one) and (out / names[0]).stat().st_mtime_ns == kept


def failing_get(task_id: str) -> SimpleNamespace:
    """The fake task, except that det on sys_b fails."""
    def gen(cfg, n_groups, n_per_group, rng):
        if task_id == "det" and cfg.name == "sys_b":
            raise RuntimeError("channel model exploded")
        return fake_generate(cfg, n_groups, n_per_group, rng)
    return SimpleNamespace(X_KEYS=FAKE.X_KEYS, Y_KEYS=FAKE.Y_KEYS, generate=gen)


def test_error_on_one_rank_stops_every_rank_and_resumes(tmp_path):
    results = run_ranks(make_cfg(tmp_path), 3, failing_get)
    assert all(isinstance(r, RankError) for r in results)
    assert all("rank 1: RuntimeError: channel model exploded" in str(r) for r in results)  # plan item 7 -> rank 1
    assert isinstance(results[1].__cause__, RuntimeError) and results[0].__cause__ is None
    index = load_index(tmp_path)
    assert len(index["shards"]) == 7 and verify(tmp_path) == {} and not list(tmp_path.glob(PART_GLOB))
    results = run_ranks(make_cfg(tmp_path), 2)
    assert results[0].written == 1 and results[0].skipped == 7


def test_progress_files_of_an_interrupted_run_are_resumed_and_removed(tmp_path, monkeypatch):
    ref = shards_in(monkeypatch, tmp_path / "ref")
    write_shards(make_cfg("shards"), get_task=fake_get, progress=False)
    out = shards_in(monkeypatch, tmp_path / "out")
    run_ranks(make_cfg("shards"), 2)
    index = (out / "index.json").read_text()
    (out / ".index.rank-00001.json").write_text(index)      # as if rank 1 was killed after saving its progress
    (out / "index.json").write_text(index.replace('"shards": [', '"shards": [], "_old": ['))   # lists nothing
    summary = write_shards(make_cfg("shards"), get_task=fake_get, progress=False)            # plain, one process
    assert summary.written == 0 and summary.skipped == 8
    assert tree(out) == tree(ref)


def test_torchrun_two_ranks_byte_identical_to_one_process(tmp_path, monkeypatch, capsys):
    args = ["--config", str(ROOT / "configs/data/debug.yaml"), "tasks=[pre_sr,de,pe]", "groups_per_shard=1",
            "out_dir=shards"]
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV} | {"OMP_NUM_THREADS": "1"}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", str(ROOT / "launch/make_data.py"), *args]
    (tmp_path / "ranks").mkdir()
    proc = subprocess.Popen(cmd, cwd=tmp_path / "ranks", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    for key in DIST_ENV:                                    # meanwhile, the single-process reference
        monkeypatch.delenv(key, raising=False)
    one = shards_in(monkeypatch, tmp_path / "one")
    single = load_script().main(args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "shards written 6 (rank 0: 3, rank 1: 3), skipped (complete) 0" in out
    assert single.written == 6 and "shards written 6, skipped (complete) 0" in capsys.readouterr().out
    assert tree(tmp_path / "ranks" / "shards") == tree(one) and len(tree(one)) == 7
