"""train.init_from: warm start from a save_pretrained directory (new modules keep their initialisation)."""
import pytest
import torch

from icwm.infer import save_pretrained
from icwm.model import ModelConfig, build_model
from icwm.train.checkpoint import init_weights


def test_warm_start_keeps_new_modules_fresh(tmp_path):
    old_cfg = ModelConfig.flavour("debug", icr=False)          # a model without the in-context ridge fits
    old = build_model(old_cfg)
    save_pretrained(old, old_cfg, tmp_path / "old")
    torch.manual_seed(3)
    new = build_model(ModelConfig.flavour("debug"))
    init = {k: v.clone() for k, v in new.state_dict().items()}
    fresh = init_weights(new, tmp_path / "old")
    assert fresh and set(fresh) == set(new.state_dict()) - set(old.state_dict())
    assert all(".icr." in k for k in fresh)
    own = new.state_dict()
    for k in fresh:
        assert torch.equal(own[k], init[k]), k
    for k, v in old.state_dict().items():
        assert torch.equal(own[k], v), k


def test_warm_start_rejects_weights_the_model_lacks(tmp_path):
    cfg = ModelConfig.flavour("debug")
    save_pretrained(build_model(cfg), cfg, tmp_path / "m")
    with pytest.raises(ValueError, match="train.init_from"):
        init_weights(build_model(ModelConfig.flavour("debug", icr=False)), tmp_path / "m")


def test_warm_start_rejects_other_shapes(tmp_path):
    cfg = ModelConfig.flavour("debug")
    save_pretrained(build_model(cfg), cfg, tmp_path / "m")
    with pytest.raises(ValueError, match="train.init_from"):
        init_weights(build_model(ModelConfig.flavour("debug", d_model=48)), tmp_path / "m")


def test_model_tasks_must_cover_the_data_tasks(tmp_path):
    """A shard set with det fed to a pre_sr-only model fails at start-up, naming model.tasks."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
    from test_shards import fake_get, make_cfg

    from icwm.config import load_config
    from icwm.data.shards import write_shards
    from icwm.train.config import PretrainConfig
    from icwm.train.loop import Trainer
    write_shards(make_cfg(tmp_path / "shards"), get_task=fake_get, progress=False)
    cfg = load_config(PretrainConfig, None,        # defaults: shards source, every task the shards hold
                      [f"data.shards_dir={tmp_path / 'shards'}", "model.tasks=[pre_sr]", "data.k_max=2",
                       f"train.out_dir={tmp_path / 'run'}", "train.progress=false"])
    with pytest.raises(ValueError, match="model.tasks"):
        Trainer(cfg)
