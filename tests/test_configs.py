"""Every YAML under configs/ loads into the dataclass of its folder (unknown keys are errors there).

Each configs/ subfolder maps to its loader ("module:attr": a dataclass loaded with ``load_config``, or a
function taking the path); every folder must have one and every loader must import.
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from icwm.config import load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
LOADERS = {
    "data": "icwm.data.config:DataConfig",
    "pretrain": "icwm.train.config:PretrainConfig",
    "systems": "icwm.data.config:load_family",
    "adapters": "adapters_llm.config:FinetuneConfig",
    "eval": "icwm.eval.config:EvalConfig",
    "compare": "icwm.compare.config:CompareConfig",
}


def resolve(target: str):
    """The loader object named ``module:attr`` (an import error is the test's failure, not a skipped folder)."""
    mod, attr = target.split(":")
    return getattr(importlib.import_module(mod), attr)


def load(folder: str, path: Path):
    obj = resolve(LOADERS[folder])
    return load_config(obj, path) if dataclasses.is_dataclass(obj) else obj(path)


def cases() -> list:
    out = []
    for sub in sorted(p for p in CONFIGS.iterdir() if p.is_dir()):
        if sub.name in LOADERS:
            out += [pytest.param(sub.name, y, id=f"{sub.name}/{y.name}") for y in sorted(sub.rglob("*.yaml"))]
    return out


def test_every_config_folder_has_a_loader():
    folders = {p.name for p in CONFIGS.iterdir() if p.is_dir()}
    assert folders - set(LOADERS) == set(), f"configs/ folders without a loader mapping: {folders - set(LOADERS)}"
    assert {c.values[0] for c in cases()} == folders, "a configs/ folder without YAML files"


@pytest.mark.parametrize("folder,path", cases())
def test_config_loads(folder: str, path: Path):
    cfg = load(folder, path)
    assert cfg, f"{path} loaded as an empty {type(cfg).__name__}"
    if dataclasses.is_dataclass(cfg):
        with pytest.raises(ValueError, match="no_such_key"):
            load_config(type(cfg), path, ["no_such_key=1"])


@pytest.mark.parametrize("name", ["debug", "small", "base", "large"])
def test_pretrain_flavour_sizes_match_model_flavours(name: str):
    from icwm.model import FLAVOURS
    from icwm.train.config import PretrainConfig
    cfg = load_config(PretrainConfig, CONFIGS / "pretrain" / f"{name}.yaml")
    assert cfg.model.name == name
    for key, value in FLAVOURS[name].items():
        assert getattr(cfg.model, key) == value, f"configs/pretrain/{name}.yaml model.{key}"
    assert cfg.data.k_max <= cfg.model.k_max


def test_pretrain_cross_field_checks_name_the_field():
    from icwm.train.config import PretrainConfig
    path = CONFIGS / "pretrain" / "debug.yaml"
    with pytest.raises(ValueError, match="data.k_max"):
        load_config(PretrainConfig, path, ["data.k_max=17"])
    with pytest.raises(ValueError, match="deepspeed.zero_stage"):
        load_config(PretrainConfig, path, ["deepspeed.zero_stage=4"])
    with pytest.raises(ValueError, match="train.stepz"):
        load_config(PretrainConfig, path, ["train.stepz=3"])
    cfg = load_config(PretrainConfig, path, ["train.grad_accum=3", "data.batch_size=5"])
    assert cfg.global_batch(world_size=2) == 30
    assert cfg.deepspeed.resolved_precision(on_gpu=False) == "fp32"
    assert cfg.deepspeed.resolved_precision(on_gpu=True) == "bf16"


def test_entry_config_help_bad_value_and_good_value(capsys):
    from icwm.config import entry_config
    from icwm.eval.config import EvalConfig
    assert entry_config(["--help"], "the doc", "prog", lambda: EvalConfig) == 0
    assert capsys.readouterr().out == "the doc\n"
    assert entry_config(["episodes=0"], "the doc", "prog", lambda: EvalConfig) == 2
    assert capsys.readouterr().err.startswith("prog: episodes: expected an integer >= 1")
    cfg = entry_config(["episodes=3"], "the doc", "prog", lambda: EvalConfig)
    assert isinstance(cfg, EvalConfig) and cfg.episodes == 3


@pytest.mark.parametrize("name", ["base", "large", "small_trunk"])
def test_pretrain_configs_follow_the_shipped_recipe(name: str):
    """base / large train small.yaml's recipe at their size, small_trunk that recipe without the in-context ridge:
    their model options equal small.yaml's but for size and the ablation's own switches, and so do the losses."""
    from icwm.model import FLAVOURS, ModelConfig
    from icwm.train.config import PretrainConfig
    small = load_config(PretrainConfig, CONFIGS / "pretrain" / "small.yaml")
    cfg = load_config(PretrainConfig, CONFIGS / "pretrain" / f"{name}.yaml")
    own = {"name", *FLAVOURS["small"]} | ({"icr", "bf_density_kernel"} if name == "small_trunk" else set())
    differ = [f.name for f in dataclasses.fields(ModelConfig)
              if f.name not in own and getattr(cfg.model, f.name) != getattr(small.model, f.name)]
    assert differ == [], f"configs/pretrain/{name}.yaml model options differ from small.yaml's: {differ}"
    assert (cfg.train.latent_weight, cfg.train.latent_given) == (small.train.latent_weight, small.train.latent_given)
    assert cfg.optim.icr_lr_mult == small.optim.icr_lr_mult
    if name == "small_trunk":
        assert not cfg.model.icr and cfg.model.bf_density_kernel == 0
        assert (cfg.data, cfg.optim) == (small.data, small.optim)
        assert dataclasses.replace(cfg.train, out_dir=small.train.out_dir) == small.train


def test_gpu_pretraining_data_has_the_small_recipes_systems():
    """configs/data/nominal.yaml (base / large) draws from small_nominal.yaml's families, with groups long enough."""
    from icwm.data.config import DataConfig
    from icwm.train.config import PretrainConfig
    small = load_config(DataConfig, CONFIGS / "data" / "small_nominal.yaml")
    gpu = load_config(DataConfig, CONFIGS / "data" / "nominal.yaml")
    assert (gpu.tasks, gpu.families, gpu.task_families) == (small.tasks, small.families, small.task_families)
    assert gpu.task_groups.keys() == small.task_groups.keys()
    for name in ("base", "large"):
        cfg = load_config(PretrainConfig, CONFIGS / "pretrain" / f"{name}.yaml")
        assert cfg.data.shards_dir == gpu.out_dir
        assert cfg.data.k_max + 1 <= gpu.samples_per_group


def test_a_mapping_on_the_command_line_replaces_the_yamls():
    """``data.task_weights={pre_sr: 1.0}`` trains pre_sr alone (OmegaConf alone would merge it into the YAML's nine
    tasks) while ``data.task_weights.det=2.0`` sets one entry; ``{}`` empties a mapping; a nested section given as a
    mapping still merges with its defaults."""
    from icwm.data.config import DataConfig
    from icwm.train.config import PretrainConfig
    path = CONFIGS / "pretrain" / "debug.yaml"
    assert len(load_config(PretrainConfig, path).data.task_weights) == 9
    cfg = load_config(PretrainConfig, path, ["data.task_weights={pre_sr: 1.0}"])
    assert cfg.data.task_weights == {"pre_sr": 1.0}
    one = load_config(PretrainConfig, path, ["data.task_weights.det=2.0"]).data.task_weights    # sets one entry
    assert len(one) == 9 and one["det"] == 2.0
    small = CONFIGS / "data" / "small.yaml"
    assert load_config(DataConfig, small, ["tasks=[pre_sr]", "task_groups={}", "task_families={}"]).task_groups == {}
    opt = load_config(PretrainConfig, path, ["optim={lr: 0.5}"]).optim
    assert opt.lr == 0.5 and opt.clip == load_config(PretrainConfig, path).optim.clip


def test_extends_layers_a_file_on_the_one_it_names(tmp_path, monkeypatch):
    """``extends: <path>`` (relative to the file's folder, whatever the working directory): the named file's values
    first, then the file's own; sections merge field by field, a mapping field given again replaces the earlier one,
    chains of several files work and the key itself never reaches the dataclass."""
    from icwm.train.config import PretrainConfig
    (tmp_path / "sub").mkdir()
    (tmp_path / "root.yaml").write_text(f"extends: {CONFIGS / 'pretrain' / 'debug.yaml'}\n"
                                        "optim: {lr: 0.25}\ntrain: {steps: 7}\n")
    (tmp_path / "sub" / "mid.yaml").write_text("extends: ../root.yaml\ndata: {task_weights: {det: 2.0}}\n")
    (tmp_path / "sub" / "leaf.yaml").write_text("extends: mid.yaml\ntrain: {steps: 9}\n")
    monkeypatch.chdir(tmp_path / "sub")
    debug = load_config(PretrainConfig, CONFIGS / "pretrain" / "debug.yaml")
    cfg = load_config(PretrainConfig, tmp_path / "sub" / "leaf.yaml", ["optim.clip=0.5"])
    assert (cfg.train.steps, cfg.optim.lr, cfg.optim.clip) == (9, 0.25, 0.5)
    assert cfg.optim.warmup_steps == debug.optim.warmup_steps and cfg.model == debug.model
    assert len(debug.data.task_weights) == 9 and cfg.data.task_weights == {"det": 2.0}


@pytest.mark.parametrize("text,match", [
    ("extends: loop.yaml\n", "extends: a cycle"),
    ("extends: 3\n", "extends: expected the path of a YAML file, got 3"),
    ("extends: missing.yaml\n", "no such file"),
    ("extends: unknown.yaml\n", "no_such_key"),
])
def test_extends_refuses_cycles_non_paths_missing_files_and_unknown_keys(tmp_path, text, match):
    from icwm.train.config import PretrainConfig
    (tmp_path / "unknown.yaml").write_text("train: {no_such_key: 1}\n")
    (tmp_path / "loop.yaml").write_text(text)
    with pytest.raises(ValueError, match=match):
        load_config(PretrainConfig, tmp_path / "loop.yaml")


@pytest.mark.parametrize("name", ["base", "large", "small_trunk"])
def test_recipe_variants_state_only_what_differs(name: str):
    """base / large / small_trunk extend small.yaml instead of copying its model block (copies drifted before:
    small_trunk lacked an option small.yaml gained)."""
    from icwm.config import read_layers
    layers = read_layers(CONFIGS / "pretrain" / f"{name}.yaml")
    assert len(layers) == 2 and "label_reads_x" not in layers[-1].get("model", {})


def test_shipped_model_was_trained_by_the_recipe(tmp_path):
    """The shipped icwm-small's resolved pretraining config (metadata.json, read as a config file: fields added since
    take their defaults) is configs/pretrain/small.yaml's but for the run's output folder and progress bar: one recipe,
    no hand edits (the model card states the command)."""
    import json
    import yaml
    from icwm.train.config import PretrainConfig
    meta = json.loads((ROOT / "icwm" / "assets" / "icwm-small" / "metadata.json").read_text())["pretrain_config"]
    (tmp_path / "shipped.yaml").write_text(yaml.safe_dump(meta))
    shipped = load_config(PretrainConfig, tmp_path / "shipped.yaml")
    recipe = load_config(PretrainConfig, CONFIGS / "pretrain" / "small.yaml")
    run = {"out_dir": shipped.train.out_dir, "progress": shipped.train.progress}
    assert shipped == dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, **run))
