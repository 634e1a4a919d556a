"""ModelConfig flavours, loading and validation; tokens per task at seen and unseen sizes; the block-causal mask."""
from __future__ import annotations

import math

import pytest
import torch

from icwm.config import load_config, to_yaml
from icwm.model import ModelConfig, build_model, count_parameters
from icwm.model.transformer import block_causal_mask
from model_batches import latent_batch, random_batch


def test_flavour_sizes():
    debug = count_parameters(build_model(ModelConfig.flavour("debug")))
    small = count_parameters(build_model(ModelConfig.flavour("small")))
    assert 50_000 <= debug <= 200_000
    assert 1_000_000 <= small and 4 * small <= 15 * 2**20  # <= 15 MB of fp32 safetensors
    base, large = ModelConfig.flavour("base"), ModelConfig.flavour("large")
    assert base.head_dim == 64 and large.d_model > base.d_model
    with pytest.raises(ValueError, match="model.flavour"):
        ModelConfig.flavour("huge")


def test_icr_off_removes_exactly_the_ridge_parameters():
    """icr=False drops the in-context ridge modules (3 trained scalars each: log_n0, slope, log_pool), nothing else."""
    on = dict(build_model(ModelConfig.flavour("debug")).named_parameters())
    off = dict(build_model(ModelConfig.flavour("debug", icr=False)).named_parameters())
    assert set(off) < set(on)
    extra = set(on) - set(off)
    owners = {k.rsplit(".", 1)[0] for k in extra}
    assert all(k.rsplit(".", 1)[1] in ("log_n0", "slope", "log_pool") and ".icr" in k for k in extra)
    assert len(owners) == 6     # det (embedder), ce / cp / pf (GridFit), de / pe (head)


@pytest.mark.parametrize("name", ["icr_n0", "icr_pool"])
def test_icr_fields_start_the_trained_parameters(name: str):
    model = build_model(ModelConfig.flavour("debug", **{name: 0.25}))
    param = "log_n0" if name == "icr_n0" else "log_pool"
    values = [float(p.detach()) for k, p in model.named_parameters() if k.endswith(param)]
    assert len(values) == 6 and all(abs(v - math.log(0.25)) < 1e-6 for v in values)


def test_yaml_round_trip_and_validation(tmp_path):
    cfg = ModelConfig.flavour("debug", icr=False, icr_half_width=3, tasks=("det", "bf"))
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(cfg))
    back = load_config(ModelConfig, path)
    assert back == cfg and back.tasks == ("det", "bf") and back.head_dim == 16 and back.ffn_hidden == 64
    assert not back.icr and back.icr_half_width == 3
    assert "head_dim" not in path.read_text()                      # derived values are not fields
    with pytest.raises(ValueError, match="d_modle"):
        load_config(ModelConfig, path, ["d_modle=3"])
    for removed in ("pos=rope", "demo_fit=true", "grid_filter=true", "det_anchor=ep", "fit_half_width=2"):
        with pytest.raises(ValueError, match=removed.split("=")[0]):
            load_config(ModelConfig, path, [removed])
    with pytest.raises(ValueError, match="model.d_model"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="model.tasks"):
        ModelConfig(tasks=("pre_sr", "xx"))
    with pytest.raises(ValueError, match="model.filter_half_width"):
        ModelConfig(filter_half_width=-1)
    with pytest.raises(ValueError, match="model.icr_n0"):
        ModelConfig(icr_n0=0.0)
    with pytest.raises(ValueError, match="model.icr_features"):
        ModelConfig(icr_features=0)
    with pytest.raises(ValueError, match="model.cp_first_guess"):
        ModelConfig(cp_first_guess="prony")
    with pytest.raises(ValueError, match="model.det_fit_grad"):
        ModelConfig(det_fit="equaliser", det_fit_grad=True)
    with pytest.raises(ValueError, match="model.icr_residual_ridge"):
        ModelConfig(icr_residual_ridge=("det",))
    with pytest.raises(ValueError, match="model.icr_residual_floor"):
        ModelConfig(icr_residual_floor=0.0)


# task -> (sizes, expected tokens per x, per y), B = 2
CASES = [
    ("pre_sr", dict(K=4, N=64), 4, 4), ("pre_mm", dict(K=10, N=96), 10, 10), ("pre_sr", dict(K=3, N=256), 3, 3),
    ("det", dict(K=4, R=8, S=8), 4, 4), ("det", dict(K=10, R=12, S=3), 10, 10), ("ce", dict(N=64, M=48), 12, 12),
    ("ce", dict(N=96, M=50), 13, 13), ("cp", dict(N=8, M=48), 12, 12), ("cp", dict(N=3, M=10), 3, 3),
    ("pf", dict(N=256, M=8), 2, 2), ("bf", dict(A=8, S6=64), 8, 1), ("de", dict(A=16, S6=20), 3, 1),
    ("pe", dict(A=4, S6=64), 8, 1),
]


@pytest.mark.parametrize("task,sizes,n_x,n_y", CASES)
@pytest.mark.parametrize("form", ["given", "latent"])
def test_token_shapes(task: str, sizes: dict, n_x: int, n_y: int, form: str):
    cfg = ModelConfig.flavour("debug")
    make = random_batch if form == "given" else latent_batch
    b = make(task, B=2, k=4, **sizes)
    with torch.no_grad():
        x, y, _ = build_model(cfg).embedders[task](b)
    assert x.shape == (2, 5, n_x, cfg.d_model) and y.shape == (2, 5, n_y, cfg.d_model)
    assert torch.isfinite(x).all() and torch.isfinite(y).all()


def test_block_causal_mask_against_the_definition():
    n_pairs, n_x, n_y = 3, 2, 1
    m = block_causal_mask(n_pairs, n_x, n_y)
    per = n_x + n_y
    for q in range(n_pairs * per):
        for k in range(n_pairs * per):
            pq, pk, q_is_y, k_is_y = q // per, k // per, q % per >= n_x, k % per >= n_x
            expect = pk < pq or (pk == pq and (not k_is_y or q_is_y))
            assert bool(m[q, k]) == expect
    # pair i: each x-token sees 3i + 2 keys, the y-token 3i + 3
    assert m.sum().item() == sum(n_x * (per * i + n_x) + n_y * (per * i + per) for i in range(n_pairs)) == 48
