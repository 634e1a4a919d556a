"""Bad files and paths given to the entry points (launch/*.py): ``prog: <what> (<path>)`` on stderr and exit status 2,
never a traceback; nothing half-written is left behind. Each entry point's ``main`` runs in process."""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from icwm.config import load_config
from icwm.infer import CONFIG, SHIPPED, WEIGHTS, FewShotModel
from icwm.model import ModelConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {"pretrain": "configs/pretrain/debug.yaml", "evaluate": "configs/eval/debug.yaml",
           "compare": "configs/compare/debug.yaml", "finetune_llm": "configs/adapters/debug.yaml",
           "make_data": "configs/data/debug.yaml"}


def script(name: str):
    """The module of ``launch/<name>.py`` (loaded once per test session)."""
    key = f"launch_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "launch" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    return sys.modules[key]


def call(name: str, argv: list[str], capsys) -> tuple[int, str]:
    """(exit status, stderr) of the entry point; ``make_data`` through its ``run`` (its ``main`` raises)."""
    mod = script(name)
    rc = (mod.run if name == "make_data" else mod.main)(argv)
    return rc, capsys.readouterr().err


def assert_bad(rc: int, err: str, prog: str, *parts: str) -> None:
    """Exit status 2 and one stderr line ``prog: ...`` containing ``parts``; no traceback."""
    assert rc == 2, err
    assert err.startswith(f"{prog}: ") and "Traceback" not in err, err
    assert all(p in err for p in parts), err


@pytest.fixture(scope="module")
def bad_yaml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("yaml") / "broken.yaml"
    path.write_text("model: shipped\ntasks: [pre_sr, det\nepisodes: 2\n")
    return path


@pytest.fixture(scope="module")
def truncated_model(tmp_path_factory) -> Path:
    """A model directory whose safetensors file was cut short (a copy interrupted mid-way)."""
    root = tmp_path_factory.mktemp("trunc") / "model"
    root.mkdir()
    shutil.copy(SHIPPED / CONFIG, root / CONFIG)
    (root / WEIGHTS).write_bytes((SHIPPED / WEIGHTS).read_bytes()[:5000])
    return root


def test_load_config_names_the_file_and_line_of_a_yaml_syntax_error(bad_yaml):
    with pytest.raises(ValueError, match=r"config: YAML syntax error at line 3, column \d+: .*\(.*broken\.yaml\)"):
        load_config(ModelConfig, bad_yaml)


@pytest.mark.parametrize("prog", sorted(CONFIGS))
def test_yaml_syntax_error_in_config(prog, bad_yaml, capsys):
    rc, err = call(prog, ["--config", str(bad_yaml)], capsys)
    assert_bad(rc, err, prog, "YAML syntax error at line 3", f"({bad_yaml})")


def _fewshot_argv(tmp_path: Path, demos: Path | None = None, out: Path | None = None) -> list[str]:
    np.savez(tmp_path / "q.npz", h=np.ones((2, 4), np.complex64), snr_db=np.float32(10))
    argv = ["--task", "pre_sr", "--query", str(tmp_path / "q.npz"), "--out", str(out or tmp_path / "o.npz")]
    return argv + (["--demos", str(demos)] if demos else [])


def test_fewshot_npy_instead_of_npz(tmp_path, capsys):
    np.save(tmp_path / "d.npy", np.ones(3))
    rc, err = call("fewshot", _fewshot_argv(tmp_path, tmp_path / "d.npy"), capsys)
    assert_bad(rc, err, "fewshot", "--demos", ".npz archive", f"({tmp_path / 'd.npy'})")


def test_fewshot_corrupt_npz(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", h=np.ones((3, 2, 4), np.complex64))
    data = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(data[: len(data) // 2])
    rc, err = call("fewshot", _fewshot_argv(tmp_path, tmp_path / "d.npz"), capsys)
    assert_bad(rc, err, "fewshot", "--demos", f"({tmp_path / 'd.npz'})")


def test_fewshot_out_names_a_directory_and_leaves_no_temp_file(tmp_path, capsys):
    (tmp_path / "outdir").mkdir()
    rc, err = call("fewshot", _fewshot_argv(tmp_path, out=tmp_path / "outdir"), capsys)
    assert_bad(rc, err, "fewshot", "--out", "directory", f"({tmp_path / 'outdir'})")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outdir", "q.npz"]
    assert not list((tmp_path / "outdir").iterdir())


def test_fewshot_truncated_safetensors(tmp_path, truncated_model, capsys):
    rc, err = call("fewshot", _fewshot_argv(tmp_path) + ["--model", str(truncated_model)], capsys)
    assert_bad(rc, err, "fewshot", "cannot read the weights", f"({truncated_model / WEIGHTS})")
    assert not (tmp_path / "o.npz").exists()


def test_from_pretrained_truncated_safetensors_is_a_value_error(truncated_model):
    with pytest.raises(ValueError, match=r"model: cannot read the weights: .*model\.safetensors\)"):
        FewShotModel.from_pretrained(truncated_model)


def test_evaluate_truncated_safetensors(tmp_path, truncated_model, capsys):
    rc, err = call("evaluate", ["--config", CONFIGS["evaluate"], f"model={truncated_model}",
                                f"out_dir={tmp_path / 'ev'}"], capsys)
    assert_bad(rc, err, "evaluate", f"({truncated_model / WEIGHTS})")
    assert not (tmp_path / "ev").exists()


def test_demo_truncated_safetensors(tmp_path, truncated_model, capsys):
    rc, err = call("demo", ["--model", str(truncated_model), "--episodes", "1", "--out", str(tmp_path / "d")],
                   capsys)
    assert_bad(rc, err, "demo", f"({truncated_model / WEIGHTS})")


def test_demo_missing_family_file(tmp_path, capsys):
    rc, err = call("demo", ["--family", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "d")], capsys)
    assert_bad(rc, err, "demo", "--family: no such file", f"({tmp_path / 'none.yaml'})")


def test_evaluate_missing_model_directory(tmp_path, capsys):
    rc, err = call("evaluate", ["--config", CONFIGS["evaluate"], f"model={tmp_path / 'none'}"], capsys)
    assert_bad(rc, err, "evaluate", "model: no such directory", f"({tmp_path / 'none'})")


def test_compare_missing_model_directory(tmp_path, capsys):
    rc, err = call("compare", ["--config", CONFIGS["compare"], f"native.model={tmp_path / 'none'}"], capsys)
    assert_bad(rc, err, "compare", "native.model: no such directory", f"({tmp_path / 'none'})")


def test_pretrain_missing_shards_dir(tmp_path, capsys):
    rc, err = call("pretrain", [f"data.shards_dir={tmp_path / 'shards'}", f"train.out_dir={tmp_path / 'run'}"],
                   capsys)
    assert_bad(rc, err, "pretrain", "data.shards_dir", f"({tmp_path / 'shards' / 'index.json'})")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field", ["train.resume", "train.init_from"])
def test_pretrain_missing_resume_or_init_from(field, tmp_path, capsys):
    rc, err = call("pretrain", ["--config", CONFIGS["pretrain"], f"{field}={tmp_path / 'gone'}",
                                f"train.out_dir={tmp_path / 'run'}"], capsys)
    assert_bad(rc, err, "pretrain", f"{field}: no such directory", f"({tmp_path / 'gone'})")
    assert not (tmp_path / "run").exists()


def test_pretrain_corrupt_checkpoint_error_becomes_exit_2(tmp_path, capsys, monkeypatch):
    """A ValueError from the training code (e.g. a corrupt latest checkpoint) is reported, not raised."""
    import icwm.train.loop as loop
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000004"

    def corrupt(cfg):
        raise ValueError(f"train.resume: cannot read the checkpoint state ({ckpt})")
    monkeypatch.setattr(loop, "pretrain", corrupt)
    rc, err = call("pretrain", ["--config", CONFIGS["pretrain"], f"train.out_dir={tmp_path / 'run'}"], capsys)
    assert_bad(rc, err, "pretrain", "train.resume", f"({ckpt})")


def test_finetune_llm_missing_init_from(tmp_path, capsys):
    rc, err = call("finetune_llm", ["--config", CONFIGS["finetune_llm"], f"train.init_from={tmp_path / 'gone'}",
                                    f"train.out_dir={tmp_path / 'run'}"], capsys)
    assert_bad(rc, err, "finetune_llm", "train.init_from: no such directory", f"({tmp_path / 'gone'})")


def test_make_data_out_dir_is_a_file(tmp_path, capsys):
    (tmp_path / "shards").write_text("not a directory")
    rc, err = call("make_data", ["--config", CONFIGS["make_data"], f"out_dir={tmp_path / 'shards'}"], capsys)
    assert_bad(rc, err, "make_data", str(tmp_path / "shards"))


def test_bench_out_names_a_directory(tmp_path, capsys):
    rc, err = call("bench", ["--suite", "data", "--quick", "--out", str(tmp_path)], capsys)
    assert_bad(rc, err, "bench", "--out", f"({tmp_path})")


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_evaluate_cuda_without_a_gpu(device, tmp_path, capsys, no_gpu):
    rc, err = call("evaluate", ["--config", CONFIGS["evaluate"], f"device={device}", f"out_dir={tmp_path / 'e'}"],
                   capsys)
    assert_bad(rc, err, "evaluate", "device: expected 'cpu' or 'auto'", repr(device))


def test_compare_cuda_without_a_gpu(tmp_path, capsys, no_gpu):
    rc, err = call("compare", ["--config", CONFIGS["compare"], "device=cuda", f"out_dir={tmp_path / 'c'}"], capsys)
    assert_bad(rc, err, "compare", "device: expected 'cpu' or 'auto'")


def test_from_pretrained_cuda_without_a_gpu(no_gpu):
    with pytest.raises(ValueError, match="device: expected 'cpu' or 'auto'"):
        FewShotModel.from_pretrained(device="cuda")


@pytest.mark.parametrize("argv,part", [
    (["--suite", ""], "--suite: expected at least one of"),
    (["--suite", "infer", "--model", "{tmp}"], "--model: expected a model directory"),
    (["--suite", "data", "--model", "{tmp}"], "--model: expected with a suite")])
def test_bench_refuses_an_empty_suite_and_a_model_it_cannot_use(argv, part, tmp_path, capsys):
    """Before any suite runs: no suite (it wrote an empty table), a --model that is not a model directory (a
    traceback after the other suites), a --model no chosen suite reads (silently ignored)."""
    with pytest.raises(SystemExit) as info:
        script("bench").main([a.format(tmp=tmp_path) for a in argv] + ["--out", str(tmp_path / "b.json")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and part in err and "Traceback" not in err, err
    assert not (tmp_path / "b.json").exists()
