"""Episode sampler: episode structure, rank/worker partition, determinism, resume, generated source, config."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_shards import fake_get, make_cfg  # noqa: E402

from icwm.config import load_config  # noqa: E402
from icwm.data.config import EpisodeConfig  # noqa: E402
from icwm.data.episodes import EpisodeDataset, EpisodeLoader, ShardSource  # noqa: E402
from icwm.data.shards import load_index, write_shards  # noqa: E402
from icwm.wireless.sysconfig import ArrayConfig, SystemConfig  # noqa: E402

SAMPLES = 6


@pytest.fixture(scope="module")
def shards_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    # pre_sr: 5 groups x 2 systems (shards of 2, 2, 1); det: 2 groups x 2 systems; 6 samples per group
    write_shards(make_cfg(out, samples_per_group=SAMPLES), get_task=fake_get, progress=False)
    return out


def ecfg(shards_dir, **kw) -> EpisodeConfig:
    base = dict(source="shards", shards_dir=str(shards_dir), k_min=0, k_max=4, batch_size=3, seed=5)
    return EpisodeConfig(**{**base, **kw})


def same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    return all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


def test_episode_structure(shards_dir):
    ds = EpisodeDataset(ecfg(shards_dir))
    entries = {e["file"]: e for e in load_index(shards_dir)["shards"]}
    ks = set()
    for b in ds:
        k, entry = b["k"], entries[b["shard"]]
        ks.add(k)
        assert 0 <= k <= 4 and entry["task"] == b["task"] and entry["system"] == b["system"]
        n_users = 2 if b["system"] == "sys_a" else 3
        assert b["h"].shape == (3, k + 1, n_users, 5 - n_users) and b["h"].dtype == torch.complex64
        assert b["snr_db"].shape == (3, k + 1) and b["lam_p"].shape == (3, k + 1, n_users, 2)
        assert (b["gid"] == b["gid"][:, :1]).all()                       # demos and query from one group
        sid = b["sid"].sort(dim=1).values                                # k + 1 distinct samples per episode
        assert (sid[:, 1:] != sid[:, :-1]).all()
    assert len(ks) > 2


def test_query_is_a_fresh_sample_of_the_group(shards_dir):
    """Position k (last) is the query: a sample of the demos' group that is none of the demos."""
    ds = EpisodeDataset(ecfg(shards_dir, k_min=2, k_max=2))
    b = ds.batch_at(0, 0)
    x = b["h"]                                                            # [batch, k + 1, user, ant]
    assert x.shape[1] == 3
    demos, query = x[:, :-1], x[:, -1]
    assert not any(torch.equal(query[i], demos[i, j]) for i in range(3) for j in range(2))


def test_single_task_pass_covers_every_group(shards_dir):
    ds = EpisodeDataset(ecfg(shards_dir, task_weights={"pre_sr": 1.0}))
    seen = {(b["shard"], int(g)) for b in ds for g in b["gid"][:, 0]}
    entries = [e for e in load_index(shards_dir)["shards"] if e["task"] == "pre_sr"]
    assert len(ds) == sum(-(-e["groups"] // 3) for e in entries)
    assert len(seen) == sum(e["groups"] for e in entries)


def test_ranks_disjoint_and_covering(shards_dir):
    cfg = ecfg(shards_dir)
    full = EpisodeDataset(cfg, rank=0, world_size=1)
    parts = [list(EpisodeDataset(cfg, rank=r, world_size=3)) for r in range(3)]
    assert len({len(p) for p in parts}) == 1                              # equal steps on every rank
    idx = [b["index"] for p in parts for b in p]
    assert sorted(idx) == list(range(len(idx))) and len(idx) >= len(full)
    for r, p in enumerate(parts):
        assert [b["index"] for b in p] == list(range(r, len(idx), 3))
        assert all(same(b, full.batch_at(0, b["index"])) for b in p)


def test_dataloader_workers_reassemble_the_rank_stream(shards_dir):
    ds = EpisodeDataset(ecfg(shards_dir), rank=1, world_size=2)
    expected = list(EpisodeDataset(ecfg(shards_dir), rank=1, world_size=2))
    got = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2))
    assert len(got) == len(expected) and all(same(a, b) for a, b in zip(got, expected))


def test_deterministic_per_seed_and_epoch(shards_dir):
    a = list(EpisodeDataset(ecfg(shards_dir)))
    b = list(EpisodeDataset(ecfg(shards_dir)))
    assert all(same(x, y) for x, y in zip(a, b))
    ds = EpisodeDataset(ecfg(shards_dir))
    ds.set_epoch(1)
    e1 = list(ds)
    assert len(e1) == len(a) and any(not same(x, y) for x, y in zip(a, e1))
    fixed = dict(task_weights={"pre_sr": 1.0}, k_min=2, k_max=2)         # same shapes: compare contents
    s5, s6 = (list(EpisodeDataset(ecfg(shards_dir, seed=s, **fixed))) for s in (5, 6))
    assert any(not torch.equal(x["h"], y["h"]) for x, y in zip(s5, s6) if x["h"].shape == y["h"].shape)
    assert sum(x["h"].shape == y["h"].shape for x, y in zip(s5, s6)) >= 2


def test_resume_in_process_equals_uninterrupted(shards_dir):
    ref = EpisodeDataset(ecfg(shards_dir))
    n = len(ref)
    stream = list(ref) + list(ref)                                        # epochs 0 and 1
    ds = EpisodeDataset(ecfg(shards_dir))
    it = iter(ds)
    head = [next(it) for _ in range(3)]
    state = ds.state_dict()
    assert state == {"epoch": 0, "position": 3}
    resumed = EpisodeDataset(ecfg(shards_dir))
    resumed.load_state_dict(state)
    tail = list(resumed) + list(resumed)[: 2]
    assert len(tail) == n - 3 + 2
    assert all(same(x, y) for x, y in zip(head + tail, stream))


def test_loader_resume_with_workers_across_epochs(shards_dir):
    cfg = ecfg(shards_dir, batches_per_epoch=5)
    ref_loader = EpisodeLoader(EpisodeDataset(cfg, rank=0, world_size=2))
    ref = [b for _, b in zip(range(8), ref_loader)]                      # 3 per epoch -> crosses 2 epochs
    assert [b["epoch"] for b in ref] == [0, 0, 0, 1, 1, 1, 2, 2]
    first = EpisodeLoader(EpisodeDataset(cfg, rank=0, world_size=2), num_workers=2)
    head = [b for _, b in zip(range(4), first)]
    state = first.state_dict()
    assert state == {"epoch": 1, "position": 1}
    second = EpisodeLoader(EpisodeDataset(cfg, rank=0, world_size=2), num_workers=2)
    second.load_state_dict(state)
    tail = [b for _, b in zip(range(4), second)]
    assert all(same(x, y) for x, y in zip(head + tail, ref))


def test_generator_source():
    systems = [SystemConfig(name="g1", num_users=2, array=ArrayConfig(kind="ula", cols=3)),
               SystemConfig(name="g2", num_users=1, array=ArrayConfig(kind="ula", cols=2))]
    cfg = EpisodeConfig(source="generate", systems=systems, task_weights={"cp": 1.0, "det": 3.0}, k_min=1,
                        k_max=3, batch_size=2, batches_per_epoch=40, seed=3)
    a = list(EpisodeDataset(cfg, get_task=fake_get))
    b = list(EpisodeDataset(cfg, get_task=fake_get))
    assert len(a) == 40 and all(same(x, y) for x, y in zip(a, b))
    for x in a:
        users, ants = (2, 3) if x["system"] == "g1" else (1, 2)
        assert 1 <= x["k"] <= 3 and x["h"].shape == (2, x["k"] + 1, users, ants) and x["shard"] == ""
    tasks = [x["task"] for x in a]
    assert set(tasks) == {"cp", "det"} and tasks.count("det") > tasks.count("cp")
    assert {x["system"] for x in a} == {"g1", "g2"}
    assert all((x["sid"][:, -1] == x["k"]).all() for x in a)              # query = last sample generated


def test_k_max_bounded_by_group_size(shards_dir):
    with pytest.raises(ValueError, match="k_max"):
        ShardSource(ecfg(shards_dir, k_max=SAMPLES))


def test_weighted_task_missing_from_shards(shards_dir):
    with pytest.raises(ValueError, match="task_weights"):
        ShardSource(ecfg(shards_dir, task_weights={"ce": 1.0}))


@pytest.mark.parametrize("override, field", [
    (["k_min=3", "k_max=2"], "k_min"), (["bogus=1"], "bogus"), (["source=generate", "batches_per_epoch=4"],
    "task_weights"), (["task_weights={nope: 1.0}", "shards_dir=x"], "task_weights"), (["batch_size=0"], "batch_size"),
    (["k_min=-1"], "k_min"), (["source=shards"], "shards_dir"),
])
def test_bad_episode_config_names_field(override, field):
    with pytest.raises(ValueError, match=field):
        load_config(EpisodeConfig, None, override)



def test_time_ordered_tasks_put_demos_before_the_query(shards_dir, monkeypatch):
    """For trajectory tasks (cp) every demo precedes the query in time (sample index = time); others are shuffled."""
    from icwm.data import episodes
    assert "cp" in episodes.TIME_ORDERED

    def orders(ds):
        return [b["sid"] for b in ds if b["task"] == "pre_sr" and b["k"] >= 2]

    shuffled = orders(EpisodeDataset(ecfg(shards_dir, k_min=2, k_max=4)))
    assert any(((s[:, 1:] < s[:, :-1]).any()) for s in shuffled)          # plain tasks: any order
    monkeypatch.setattr(episodes, "TIME_ORDERED", ("pre_sr",))
    ordered = orders(EpisodeDataset(ecfg(shards_dir, k_min=2, k_max=4)))
    assert ordered and all((s[:, 1:] > s[:, :-1]).all() for s in ordered)  # strictly increasing, query last
