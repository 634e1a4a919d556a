"""The k curriculum (EpisodeConfig.k_ramp, EpisodeDataset.k_high): the upper bound of k rises linearly from k_min to
k_max over the run's first k_ramp global batches (counted across epochs and ranks), then stays at k_max; k_ramp = 0
is the uniform draw in [k_min, k_max] from batch 0."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_shards import fake_get, systems  # noqa: E402

from icwm.config import load_config  # noqa: E402
from icwm.data.config import EpisodeConfig  # noqa: E402
from icwm.data.episodes import EpisodeDataset, make_generator  # noqa: E402

K_MIN, K_MAX, EPOCH = 1, 9, 16


def _ds(k_ramp: int, **kw) -> EpisodeDataset:
    cfg = EpisodeConfig(source="generate", systems=systems(), task_weights={"pre_sr": 1.0}, k_min=K_MIN, k_max=K_MAX,
                        k_ramp=k_ramp, batch_size=1, batches_per_epoch=EPOCH, seed=7)
    return EpisodeDataset(cfg, get_task=fake_get, **kw)


def _bound(g: int, ramp: int) -> int:
    return K_MIN + (K_MAX - K_MIN) * (g + 1) // ramp if g < ramp else K_MAX


def test_k_stays_under_the_ramp_then_reaches_k_max():
    ramp = 40
    ds = _ds(ramp)
    ks = []
    for g in range(ramp + 4 * EPOCH):                       # global batch g = epoch * EPOCH + i
        epoch, i = divmod(g, EPOCH)
        assert ds.k_high(epoch, i) == _bound(g, ramp)
        b = ds.batch_at(epoch, i)
        assert b["h"].shape[1] == b["k"] + 1
        ks.append(b["k"])
    assert all(K_MIN <= k <= _bound(g, ramp) for g, k in enumerate(ks))
    assert ks[0] == K_MIN and max(ks[:ramp // 4]) < K_MAX - 3    # early batches: few demonstrations
    after = ks[ramp:]
    assert max(after) == K_MAX and min(after) == K_MIN          # after the ramp: the full range
    assert max(k - _bound(g, ramp) for g, k in enumerate(ks[:ramp])) == 0   # the bound is reached during the ramp


def test_ramp_counts_global_batches_across_epochs():
    ds = _ds(3 * EPOCH)
    assert [ds.k_high(e, 0) for e in range(4)] == [_bound(e * EPOCH, 3 * EPOCH) for e in range(4)]
    assert ds.k_high(0, 0) < ds.k_high(1, 0) < ds.k_high(2, 0) < ds.k_high(3, 0) == K_MAX


def test_iteration_uses_the_global_batch_index_on_every_rank():
    """Rank r of W takes global batches r, r + W, ...: each is the single-rank stream's batch of that index, so its
    k follows the ramp of the global index, not of the rank's own count."""
    ramp = EPOCH
    full = _ds(ramp)
    for rank in range(2):
        ds = _ds(ramp, rank=rank, world_size=2)
        got = list(ds)
        assert len(got) == EPOCH // 2 and ds.epoch == 1
        for n, b in enumerate(got):
            ref = full.batch_at(0, rank + 2 * n)
            assert b["index"] == rank + 2 * n and b["k"] == ref["k"] <= _bound(rank + 2 * n, ramp)
            assert torch.equal(b["h"], ref["h"])


def test_k_ramp_zero_is_the_uniform_draw():
    ds = _ds(0)
    ks = []
    for i in range(EPOCH):
        assert ds.k_high(0, i) == K_MAX
        old = int(torch.randint(K_MIN, K_MAX + 1, (), generator=make_generator(7, "batch", 0, i)))
        ks.append(ds.batch_at(0, i)["k"])
        assert ks[-1] == old
    assert max(ks) > K_MAX - 3                                  # large k from the start


def test_negative_k_ramp_is_rejected():
    with pytest.raises(ValueError, match="k_ramp"):
        load_config(EpisodeConfig, None, ["k_ramp=-1"])
