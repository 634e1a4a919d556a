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
    assert demo.main(["--model", str(tmp_path / "model"), "--episodes", "4", "--out", str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "demo.csv")))
    val = {(r["row"], int(r["k"])): float(r["value"]) for r in rows}
    assert {r for r, _ in val} == {"icwm", "icwm SNR error [dB]", "oracle", "blind", "in_context",
                                   "in_context SNR error [dB]"}
    assert {k for _, k in val} == {0, 1, 2, 4, 8, 16}
    # oracle and blind do not read the demonstrations; the in-context fit at k = 0 is the blind design
    assert len({val["oracle", k] for k in (0, 4, 16)}) == 1
    assert abs(val["in_context", 0] - val["blind", 0]) < 1e-6
    # the classical SNR fit learns from the demonstrations (its error shrinks from k = 0 to 16)
    assert val["in_context SNR error [dB]", 16] < 0.5 * val["in_context SNR error [dB]", 0]
    assert val["oracle", 0] >= val["blind", 0] > 0
    assert (tmp_path / "out" / "demo.png").stat().st_size > 1000


def test_demo_refuses_a_given_form_system(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("demo", Path(__file__).resolve().parents[1] / "launch" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    cfg = ModelConfig.flavour("debug")
    save_pretrained(build_model(cfg), cfg, tmp_path / "model")
    rc = demo.main(["--model", str(tmp_path / "model"), "--family", "configs/systems/unseen.yaml",
                    "--system", "unseen_nt96", "--episodes", "2", "--out", str(tmp_path / "out")])
    assert rc == 2 and "latent-form system" in capsys.readouterr().err


def test_demo_tells_a_nominal_model_the_range_centre(tmp_path):
    """A model trained with nominal values (``model.nominal``) is told the SNR range's centre, as blind is: with its
    probe read-out at zero, its k = 0 estimate is that centre, so its SNR error is the blind design's."""
    import torch
    spec = importlib.util.spec_from_file_location("demo", Path(__file__).resolve().parents[1] / "launch" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    cfg = ModelConfig.flavour("debug", nominal=True)
    model = build_model(cfg)
    with torch.no_grad():
        model.probes["pre_sr"].weight.zero_()
    save_pretrained(model, cfg, tmp_path / "model")
    assert demo.main(["--model", str(tmp_path / "model"), "--episodes", "4", "--out", str(tmp_path / "out")]) == 0
    val = {(r["row"], int(r["k"])): float(r["value"]) for r in csv.DictReader(open(tmp_path / "out" / "demo.csv"))}
    assert abs(val["icwm SNR error [dB]", 0] - val["in_context SNR error [dB]", 0]) < 1e-4
    assert val["icwm SNR error [dB]", 0] > 1.0                     # the centre, not the truth
