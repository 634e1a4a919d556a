"""Shard writer / reader / index: round trip, byte determinism, resume, corruption reports, config errors."""
from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest
import torch

from icwm.config import load_config
from icwm.data.config import DataConfig
from icwm.data.shards import (ShardError, load_index, load_shard, plan_shards, read_shard, stable_seed, verify,
                              write_shards)
from icwm.wireless.sysconfig import ArrayConfig, SystemConfig


def fake_generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict:
    """Small random task output with leading [group, sample], complex, float and integer tensors."""
    shape = (n_groups, n_per_group, cfg.num_users, cfg.num_ant)
    h = torch.complex(torch.randn(shape, generator=rng), torch.randn(shape, generator=rng))
    snr = 5 + 15 * torch.rand(n_groups, n_per_group, generator=rng)
    sid = torch.arange(n_per_group).expand(n_groups, n_per_group).clone()             # sample id in group
    gid = torch.randint(0, 2**62, (n_groups, 1), generator=rng).expand(-1, n_per_group).clone()  # group tag
    return {"h": h, "snr_db": snr, "lam_p": torch.rand(shape[:3] + (2,), generator=rng), "sid": sid, "gid": gid}


FAKE = SimpleNamespace(X_KEYS=("h", "snr_db"), Y_KEYS=("lam_p",), generate=fake_generate)


def fake_get(task_id: str) -> SimpleNamespace:
    """Task getter returning the fake task for every id (module level: picklable for spawn workers)."""
    return FAKE


def systems() -> list[SystemConfig]:
    return [SystemConfig(name="sys_a", num_users=2, array=ArrayConfig(kind="ula", cols=3)),
            SystemConfig(name="sys_b", num_users=3, array=ArrayConfig(kind="ula", cols=2))]


def make_cfg(out_dir, **kw) -> DataConfig:
    base = dict(out_dir=str(out_dir), tasks=["pre_sr", "det"], task_groups={"det": 2}, groups_per_system=5,
                groups_per_shard=2, samples_per_group=4, systems=systems())
    return DataConfig(**{**base, **kw})


def shas(out_dir) -> dict[str, str]:
    return {e["file"]: e["sha256"] for e in load_index(out_dir)["shards"]}


def test_plan_counts_and_round_trip(tmp_path):
    cfg = make_cfg(tmp_path)
    summary = write_shards(cfg, get_task=fake_get, progress=False)
    specs = plan_shards(cfg, {t: cfg.systems_for(t) for t in cfg.tasks})
    # pre_sr: 5 groups -> shards of 2, 2, 1 per system; det: 2 groups -> 1 shard per system
    assert [s.n_groups for s in specs] == [2, 2, 1, 2, 2, 1, 2, 2]
    assert summary.written == 8 and summary.skipped == 0 and summary.samples == (5 + 2) * 2 * 4
    for spec in specs:
        expected = fake_generate(spec.system, spec.n_groups, 4, torch.Generator().manual_seed(spec.seed))
        data, metas = load_shard(tmp_path / spec.file)
        assert data.keys() == expected.keys()
        for key in expected:
            assert data[key].dtype == expected[key].dtype
            assert torch.equal(data[key], expected[key])
        assert data["h"].dtype == torch.complex64
        assert [m["group"] for m in metas] == list(range(spec.first_group, spec.first_group + spec.n_groups))
        assert {m["task"] for m in metas} == {spec.task} and metas[0]["system"]["name"] == spec.system.name
        assert metas[0]["seed"] == spec.seed and set(metas[0]["versions"]) == {"torch", "numpy", "sionna", "icwm"}
    assert verify(tmp_path) == {}


def test_seeds_distinct_and_stable():
    seeds = {stable_seed(0, "train", t, s, k) for t in ("pre_sr", "det") for s in range(3) for k in range(4)}
    assert len(seeds) == 24 and all(0 <= x < 2**63 for x in seeds)
    assert stable_seed(0, "train", "det", 1, 2) == stable_seed(0, "train", "det", 1, 2)
    assert stable_seed(0, "train", "det", 1, 2) != stable_seed(0, "test", "det", 1, 2)


def test_byte_determinism_serial_vs_parallel(tmp_path):
    write_shards(make_cfg(tmp_path / "a"), get_task=fake_get, progress=False)
    write_shards(make_cfg(tmp_path / "b", workers=2), get_task=fake_get, progress=False)
    a, b = shas(tmp_path / "a"), shas(tmp_path / "b")
    assert a == b and len(a) == 8
    for name in a:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    write_shards(make_cfg(tmp_path / "c", seed=1), get_task=fake_get, progress=False)
    assert all(a[n] != s for n, s in shas(tmp_path / "c").items())


def test_resume_skips_complete_and_rewrites_damaged(tmp_path):
    cfg = make_cfg(tmp_path)
    write_shards(cfg, get_task=fake_get, progress=False)
    good = shas(tmp_path)
    names = sorted(good)
    truncated, missing, kept = tmp_path / names[0], tmp_path / names[1], tmp_path / names[2]
    truncated.write_bytes(truncated.read_bytes()[:700])
    missing.unlink()
    kept_stat = kept.stat()
    summary = write_shards(cfg, get_task=fake_get, progress=False)
    assert summary.written == 2 and summary.skipped == 6
    assert shas(tmp_path) == good and verify(tmp_path) == {}
    assert kept.stat().st_ino == kept_stat.st_ino and kept.stat().st_mtime_ns == kept_stat.st_mtime_ns
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # a changed configuration (seed) invalidates every shard
    assert write_shards(make_cfg(tmp_path, seed=7), get_task=fake_get, progress=False).written == 8


def test_verify_names_each_bad_shard(tmp_path):
    write_shards(make_cfg(tmp_path), get_task=fake_get, progress=False)
    names = sorted(shas(tmp_path))
    flipped, cut, garbage = (tmp_path / n for n in names[3:6])
    raw = bytearray(flipped.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    flipped.write_bytes(bytes(raw))
    cut.write_bytes(cut.read_bytes()[:1500])
    garbage.write_bytes(b"not a tar" * 300)
    problems = verify(tmp_path, raise_on_error=False)
    assert set(problems) == {flipped.name, cut.name, garbage.name}
    assert "sha256 mismatch" in problems[flipped.name]
    assert "truncated" in problems[cut.name] and "unreadable" in problems[garbage.name]
    with pytest.raises(ShardError) as err:
        verify(tmp_path)
    for name in (flipped.name, cut.name, garbage.name):
        assert name in str(err.value)
    assert names[0] not in str(err.value)
    with pytest.raises(ShardError, match=garbage.name):
        list(read_shard(garbage))


def test_index_contents(tmp_path):
    cfg = make_cfg(tmp_path)
    write_shards(cfg, get_task=fake_get, progress=False)
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["config"]["seed"] == 0 and index["config"]["tasks"] == ["pre_sr", "det"]
    assert {t: [s["name"] for s in v] for t, v in index["systems"].items()} == {t: ["sys_a", "sys_b"]
                                                                                for t in ("pre_sr", "det")}
    for e in index["shards"]:
        assert e["bytes"] == os.path.getsize(tmp_path / e["file"]) and e["samples"] == e["groups"] * 4
    assert index["total_samples"] == sum(e["samples"] for e in index["shards"]) == 56


def test_bad_generate_output_names_key(tmp_path):
    def bad_get(task_id):
        def gen(cfg, n_groups, n_per_group, rng):
            out = fake_generate(cfg, n_groups, n_per_group, rng)
            out["snr_db"] = out["snr_db"][:, :1]
            return out
        return SimpleNamespace(X_KEYS=("h",), Y_KEYS=(), generate=gen)
    with pytest.raises(ValueError, match="snr_db"):
        write_shards(make_cfg(tmp_path), get_task=bad_get, progress=False)


@pytest.mark.parametrize("override, field", [
    (["bogus=1"], "bogus"), (["tasks=[]"], "tasks"), (["tasks=[pre_sr,nope]"], "tasks"),
    (["task_groups={ce: 3}"], "task_groups"), (["split=val"], "split"), (["groups_per_shard=0"], "groups_per_shard"),
])
def test_bad_data_config_names_field(override, field):
    with pytest.raises(ValueError, match=field):
        load_config(DataConfig, None, override)


def test_duplicate_or_unsafe_system_names(tmp_path):
    dup = [SystemConfig(name="same"), SystemConfig(name="same")]
    with pytest.raises(ValueError, match="unique"):
        make_cfg(tmp_path, systems=dup).load_systems()
    with pytest.raises(ValueError, match="name"):
        make_cfg(tmp_path, systems=[SystemConfig(name="a/b")]).load_systems()
    with pytest.raises(ValueError, match="families"):
        make_cfg(tmp_path, systems=[]).load_systems()
    missing = str(tmp_path / "no_such_family.yaml")
    with pytest.raises(ValueError, match=r"^families: expected existing system family YAML files .*no_such_family"):
        make_cfg(tmp_path, families=[missing]).load_systems()
    with pytest.raises(ValueError, match=r"^task_families\.ce: expected existing system family YAML files"):
        make_cfg(tmp_path, tasks=["ce"], task_groups={}, task_families={"ce": [missing]}).systems_for("ce")


def test_family_file_then_inline_systems(tmp_path):
    fam = tmp_path / "fam.yaml"
    fam.write_text("systems:\n  - {name: f1, num_users: 2, array: {kind: ula, cols: 2}}\n"
                   "  - {name: f2, scenario: rma, carrier_hz: 3.5e9}\n")
    cfg = make_cfg(tmp_path / "out", families=[str(fam)], systems=[SystemConfig(name="inline")])
    got = cfg.load_systems()
    assert [s.name for s in got] == ["f1", "f2", "inline"]
    assert got[0].num_ant == 2 and got[1].scenario == "rma" and got[1].carrier_hz == 3.5e9
    fam.write_text("systems:\n  - {name: f1, bogus_field: 1}\n")
    with pytest.raises(ValueError, match="bogus_field"):
        cfg.load_systems()


def test_interrupted_run_resumes_with_the_remaining_shards(tmp_path):
    calls = []

    def crashing_get(task_id):
        def gen(cfg, n_groups, n_per_group, rng):
            calls.append(1)
            if len(calls) == 4:
                raise KeyboardInterrupt
            return fake_generate(cfg, n_groups, n_per_group, rng)
        return SimpleNamespace(X_KEYS=FAKE.X_KEYS, Y_KEYS=FAKE.Y_KEYS, generate=gen)
    with pytest.raises(KeyboardInterrupt):
        write_shards(make_cfg(tmp_path), get_task=crashing_get, progress=False)
    assert len(load_index(tmp_path)["shards"]) == 3 and verify(tmp_path) == {}
    summary = write_shards(make_cfg(tmp_path), get_task=fake_get, progress=False)
    assert summary.skipped == 3 and summary.written == 5
    reference = tmp_path / "ref"
    write_shards(make_cfg(reference), get_task=fake_get, progress=False)
    assert shas(tmp_path) == shas(reference)


def test_task_families_override_the_shared_systems(tmp_path):
    fam = tmp_path / "small.yaml"
    fam.write_text("systems:\n  - {name: tiny_det, array: {kind: ula, cols: 4}, num_users: 2}\n")
    cfg = make_cfg(tmp_path, task_families={"det": [str(fam)]})
    assert [s.name for s in cfg.systems_for("det")] == ["tiny_det"]
    assert [s.name for s in cfg.systems_for("pre_sr")] == ["sys_a", "sys_b"]
    write_shards(cfg, get_task=fake_get, progress=False)
    files = [e["file"] for e in load_index(tmp_path)["shards"]]
    assert any("det-tiny_det" in f for f in files) and not any("det-sys_a" in f for f in files)
    with pytest.raises(ValueError, match="task_families"):
        make_cfg(tmp_path, task_families={"cp": [str(fam)]})
