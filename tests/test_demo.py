"""The demo entry point (README command 1, last step) runs end to end on a tiny random model."""
import csv
import importlib.util
from pathlib import Path

from icwm.infer import save_pretrained
from icwm.model import ModelConfig, build_model


def test_demo_writes_table_and_plot(tmp_path):
    spec = importlib.util.spec_from_file_location("demo", Path(__file__).resolve().parents[1] / "launch" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    cfg = ModelConfig.flavour("debug")
    save_pretrained(build_model(cfg), cfg, tmp_path / "model")
    assert demo.main(["--model", str(tmp_path / "model"), "--episodes", "2", "--out", str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "demo.csv")))
    methods = {(r["task"], r["method"]) for r in rows}
    assert {("pre_sr", "wmmse"), ("pre_sr", "zf"), ("pre_mm", "optimal"), ("pre_sr", "icwm k=0")} <= methods
    rates = {r["method"]: float(r["value"]) for r in rows if r["task"] == "pre_sr"}
    assert rates["wmmse"] >= rates["mrt"] > 0
    assert (tmp_path / "out" / "demo.png").stat().st_size > 1000
