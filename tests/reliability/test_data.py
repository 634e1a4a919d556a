"""Data sets and the sampler under hostile but realistic damage: every case ends in a ShardError naming the shard
or path, never in a traceback from deep inside or in a silently trained-on bad sample."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import icwm.tasks
from icwm.config import load_config
from icwm.data.config import DataConfig, EpisodeConfig
from icwm.data.episodes import EpisodeDataset, EpisodeLoader
from icwm.data.shards import ShardError, _write_tar, load_index, read_shard, sha256_file, verify, write_shards

DEBUG = Path(__file__).resolve().parents[2] / "configs" / "data" / "debug.yaml"


def data_cfg(out_dir: Path) -> DataConfig:
    """Tiny pre_sr set of configs/data/debug.yaml: 2 shards of 2 groups x 8 samples."""
    return load_config(DataConfig, DEBUG, [f"out_dir={out_dir}", "tasks=[pre_sr]", "groups_per_system=4"])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pristine")
    write_shards(data_cfg(out), progress=False)
    return out


@pytest.fixture
def data_dir(pristine, tmp_path) -> Path:
    """A private copy of the complete set, free to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "set"))


def dataset(shards_dir: Path) -> EpisodeDataset:
    cfg = EpisodeConfig(source="shards", shards_dir=str(shards_dir), k_min=0, k_max=3, batch_size=2, seed=1)
    return EpisodeDataset(cfg, rank=0, world_size=1)


def files(shards_dir: Path) -> list[str]:
    return [e["file"] for e in load_index(shards_dir)["shards"]]


def edit_index(shards_dir: Path, i: int, **changes) -> None:
    """Change fields of the ``i``-th entry of index.json (the completeness marker kept)."""
    index = load_index(shards_dir)
    index["shards"][i].update(changes)
    (shards_dir / "index.json").write_text(json.dumps(index))


def draw_all(ds: EpisodeDataset, seen: list[str]) -> None:
    """Draw one epoch, appending each batch's shard to ``seen`` (what would have been trained on)."""
    for batch in ds:
        seen.append(batch["shard"])


def test_complete_set_loads(data_dir):
    index = load_index(data_dir)
    assert index["complete"] is True and index["planned_shards"] == len(index["shards"]) == 2
    seen: list[str] = []
    draw_all(dataset(data_dir), seen)
    assert set(seen) == set(files(data_dir))
    batch = next(iter(dataset(data_dir)))
    assert batch["h"].shape[:2] == (2, batch["k"] + 1) and torch.isfinite(batch["h"]).all()


def test_flipped_data_byte_is_never_trained_on(data_dir):
    name = files(data_dir)[1]
    path = data_dir / name
    with tarfile.open(path) as tar:                     # first byte of the first element of record 0's "h"
        member = tar.getmember("000002.h.npy")
        payload = tar.extractfile(member).read()
    offset = member.offset_data + len(payload) - np.load(io.BytesIO(payload)).nbytes
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01                                 # a mantissa bit: still a readable, finite sample
    path.write_bytes(bytes(raw))
    assert torch.isfinite(next(read_shard(path))[0]["h"]).all()     # only the hash can tell
    ds, seen = dataset(data_dir), []                    # start-up checks sizes only: accepted
    with pytest.raises(ShardError, match=f"{name}.*corrupted, sha256 differs"):
        draw_all(ds, seen)
    assert name not in seen


def test_incomplete_set_of_a_killed_make_data_is_refused(tmp_path):
    calls = []

    def killed_on_second_shard(system, n_groups, n_per_group, rng):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return icwm.tasks.get("pre_sr").generate(system, n_groups, n_per_group, rng)

    task = SimpleNamespace(X_KEYS=icwm.tasks.get("pre_sr").X_KEYS, Y_KEYS=icwm.tasks.get("pre_sr").Y_KEYS,
                           generate=killed_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        write_shards(data_cfg(tmp_path), get_task=lambda t: task, progress=False)
    assert load_index(tmp_path)["complete"] is False and len(files(tmp_path)) == 1
    with pytest.raises(ShardError, match="incomplete data set: 1 of 2 shards listed in index.json; rerun make_data "
                                         "with the same config to finish it"):
        dataset(tmp_path)
    write_shards(data_cfg(tmp_path), progress=False)    # the advised rerun finishes it
    assert len(dataset(tmp_path)) > 0


def test_missing_shard_is_refused_at_start_up(data_dir):
    name = files(data_dir)[0]
    (data_dir / name).unlink()
    with pytest.raises(ShardError, match=f"{name}: missing"):
        dataset(data_dir)


def test_truncated_shard_is_refused_at_start_up(data_dir):
    name = files(data_dir)[1]
    (data_dir / name).write_bytes((data_dir / name).read_bytes()[:5000])
    with pytest.raises(ShardError, match=f"{name}: truncated or resized: 5000 bytes"):
        dataset(data_dir)


def test_parent_path_in_index_is_refused(data_dir, tmp_path):
    name = files(data_dir)[0]
    shutil.copy(data_dir / name, tmp_path / "outside.tar")      # a sound shard, but outside the data directory
    edit_index(data_dir, 0, file="../outside.tar")
    with pytest.raises(ShardError, match=r"\.\./outside\.tar: refused: the path must be relative"):
        dataset(data_dir)


def test_absolute_path_in_index_is_refused(data_dir, tmp_path):
    name = files(data_dir)[0]
    shutil.copy(data_dir / name, tmp_path / "elsewhere.tar")
    edit_index(data_dir, 0, file=str(tmp_path / "elsewhere.tar"))
    with pytest.raises(ShardError, match="elsewhere.tar: refused: the path must be relative"):
        dataset(data_dir)


def test_nan_in_a_stored_tensor_is_never_trained_on(data_dir):
    name = files(data_dir)[0]
    path = data_dir / name
    records = []
    for tensors, meta in read_shard(path):              # rewrite the shard with one NaN label in record 000001
        if meta["group"] == 1:
            tensors["rate_wmmse"][3] = float("nan")
        rec = {"__key__": f"{meta['group']:06d}", "meta.json": json.dumps(meta, sort_keys=True).encode()}
        for key, x in tensors.items():
            buf = io.BytesIO()
            np.save(buf, x.numpy(), allow_pickle=False)
            rec[f"{key}.npy"] = buf.getvalue()
        records.append(rec)
    _write_tar(records, path)
    edit_index(data_dir, 0, sha256=sha256_file(path), bytes=path.stat().st_size)   # size and hash agree
    ds, seen = dataset(data_dir), []
    with pytest.raises(ShardError, match=f"shard '{name}': record '000001', tensor 'rate_wmmse': 1 non-finite"):
        draw_all(ds, seen)
    assert name not in seen
    assert "non-finite" in verify(data_dir, raise_on_error=False)[name]


def test_nan_from_generate_is_refused_by_make_data(tmp_path):
    def nan_generate(system, n_groups, n_per_group, rng):
        out = icwm.tasks.get("pre_sr").generate(system, n_groups, n_per_group, rng)
        out["lam_p"][0, 0, 0, 0] = float("inf")
        return out

    task = SimpleNamespace(X_KEYS=icwm.tasks.get("pre_sr").X_KEYS, Y_KEYS=icwm.tasks.get("pre_sr").Y_KEYS,
                           generate=nan_generate)
    with pytest.raises(ValueError, match=r"pre_sr.generate\['lam_p'\]: 1 non-finite value\(s\) \(NaN/inf\) for "
                                         r"shard train-pre_sr-debug_uma-00000.tar"):
        write_shards(data_cfg(tmp_path), get_task=lambda t: task, progress=False)
    assert not list(tmp_path.glob("*.tar")) and load_index(tmp_path)["complete"] is False


def test_missing_shards_dir_names_the_path(tmp_path):
    with pytest.raises(ShardError, match=f"data directory not found \\({tmp_path / 'nope'}\\)"):
        dataset(tmp_path / "nope")


def test_missing_index_names_the_path(data_dir):
    (data_dir / "index.json").unlink()
    with pytest.raises(ShardError, match=f"no index.json: .*\\({data_dir / 'index.json'}\\)"):
        dataset(data_dir)


def test_corrupted_shard_in_a_loader_worker_gives_the_plain_message(data_dir):
    name = files(data_dir)[0]
    path = data_dir / name
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    loader, seen = EpisodeLoader(dataset(data_dir), num_workers=1), []
    with pytest.raises(ShardError) as err:
        for batch in loader:
            seen.append(batch["shard"])
    assert str(err.value).startswith(f"shard '{name}': corrupted, sha256 differs from index.json")
    assert "Traceback" not in str(err.value) and name not in seen


def test_malformed_index_entries_are_refused_at_start_up(data_dir):
    first, second = files(data_dir)
    index = load_index(data_dir)
    del index["shards"][0]["sha256"]
    index["shards"][1]["groups"] = 0
    (data_dir / "index.json").write_text(json.dumps(index))
    with pytest.raises(ShardError, match=r"2 bad shard\(s\)") as err:
        dataset(data_dir)
    assert f"{first}: missing or mistyped fields ['sha256']" in str(err.value)
    assert f"{second}: expected groups and samples_per_group >= 1, got 0, 8" in str(err.value)
