"""train.init_from: warm start from a save_pretrained directory (new modules keep their initialisation)."""
import pytest
import torch

from icwm.infer import save_pretrained
from icwm.model import ModelConfig, build_model
from icwm.train.checkpoint import init_weights


def test_warm_start_keeps_new_modules_fresh(tmp_path):
    old_cfg = ModelConfig.flavour("debug", grid_filter=False)
    old = build_model(old_cfg)
    save_pretrained(old, old_cfg, tmp_path / "old")
    torch.manual_seed(3)
    new = build_model(ModelConfig.flavour("debug"))
    fresh = init_weights(new, tmp_path / "old")
    assert fresh and all(".filter." in k for k in fresh)
    own = new.state_dict()
    for k, v in old.state_dict().items():
        assert torch.equal(own[k], v), k


def test_warm_start_rejects_other_shapes(tmp_path):
    cfg = ModelConfig.flavour("debug")
    save_pretrained(build_model(cfg), cfg, tmp_path / "m")
    with pytest.raises(ValueError, match="train.init_from"):
        init_weights(build_model(ModelConfig.flavour("debug", d_model=48)), tmp_path / "m")
