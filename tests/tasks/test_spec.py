"""TaskSpec (docs/contracts.md "Tasks"): every module's SPEC matches what its generate() produces in both forms, the
tables derived from the specs equal the hand-written ones they replaced, and inconsistent specs are rejected."""
import dataclasses
import subprocess
import sys

import pytest
import torch

from icwm import tasks
from icwm.tasks.taskspec import TaskSpec
from icwm.wireless.sysconfig import LatentConfig
from tests.tasks.test_tasks import tiny_cfg

G, S = 2, 3
DTYPE = {"c": torch.complex64, "f": torch.float32, "i": torch.int64}

# The tables as they were written by hand before the specs (the reference the derived ones must reproduce, in order).
PRIMARY = {"pre_sr": ("sum_rate", 1), "pre_mm": ("min_sinr_db", 1), "det": ("ser", -1), "ce": ("nmse_mean_db", -1),
           "cp": ("nmse_mean_db", -1), "pf": ("nmse_mean_db", -1), "bf": ("top1", 1), "de": ("mae_m", -1),
           "pe": ("nmse_mean_db", -1)}
ETA_PRIMARY = {**PRIMARY, "bf": ("gain_ratio", 1)}
CONTEXT_TASKS = ("ce", "pf", "bf", "de", "pe")
INFER_SPECS = {
    "pre_sr": ({"h": (2, "c"), "snr_db": (0, "f")}, {"lam_p": (2, "f")}),
    "pre_mm": ({"h": (2, "c"), "snr_db": (0, "f")}, {"lam_p": (2, "f")}),
    "det": ({"h": (2, "c"), "y": (2, "c"), "snr_db": (0, "f")}, {"x": (2, "c")}),
    "ce": ({"h_ls": (3, "c"), "snr_db": (0, "f")}, {"h": (3, "c")}),
    "cp": ({"h_hist": (3, "c"), "snr_db": (0, "f")}, {"h_fut": (3, "c")}),
    "pf": ({"h_ul": (3, "c"), "snr_db": (0, "f")}, {"h_dl": (3, "c")}),
    "bf": ({"h_sub6": (2, "c")}, {"beam": (0, "i")}),
    "de": ({"h_sub6": (2, "c")}, {"distance_m": (0, "f")}),
    "pe": ({"h_sub6": (2, "c")}, {"pathloss_db": (0, "f")}),
}
LATENT_X = {"pre_sr": ("snr_db",), "pre_mm": ("snr_db",), "det": ("h", "snr_db"), "ce": ("snr_db",),
            "cp": ("snr_db",), "pf": ("snr_db",), "bf": (), "de": (), "pe": ()}


@pytest.fixture(scope="module")
def samples():
    """(given, latent) samples of every task on the tiny configuration (latent: no oracle snapshots)."""
    given, latent = tiny_cfg(), tiny_cfg(form="latent", latent=LatentConfig(oracle_snapshots=0))
    return {t: tuple(tasks.get(t).generate(cfg, G, S, torch.Generator().manual_seed(i)) for cfg in (given, latent))
            for i, t in enumerate(tasks.TASKS)}


def _check_keys(s: dict, keys: dict) -> None:
    for key, (rank, kind) in keys.items():
        assert s[key].dim() == 2 + rank, (key, tuple(s[key].shape))
        assert s[key].dtype == DTYPE[kind], (key, s[key].dtype)


@pytest.mark.parametrize("task_id", tasks.TASKS)
def test_spec_matches_generate_in_both_forms(samples, task_id):
    spec, mod = tasks.spec(task_id), tasks.get(task_id)
    given, latent = samples[task_id]
    _check_keys(given, {**spec.x, **spec.y})
    assert not [k for k in given if k.startswith("latent_")]
    shown = {k: v for k, v in spec.x.items() if k not in spec.latent_x}
    _check_keys(latent, {**shown, **spec.y})
    assert not set(spec.latent_x) & set(latent), "the latent form omits latent_x"
    assert set(spec.latent_keys) == {k for k in latent if k.startswith("latent_")}
    assert tasks.x_keys(mod, latent) == tuple(shown) and tasks.x_keys(mod, given) == spec.x_keys


@pytest.mark.parametrize("task_id", tasks.TASKS)
def test_primary_metrics_come_from_metric(samples, task_id):
    """``primary`` and ``eta_metric`` name what ``metric()`` returns (``nmse_mean_db`` is the reports' mean of
    ``nmse``, ``icwm.eval.eta.SCALE``)."""
    from icwm.eval.eta import SCALE
    spec, mod = tasks.spec(task_id), tasks.get(task_id)
    s = samples[task_id][0]
    names = set(mod.metric({k: s[k] for k in spec.y_keys}, s))
    for metric in (spec.primary, spec.eta_metric):
        assert SCALE.get(metric, (metric,))[0] in names, metric


@pytest.mark.parametrize("task_id", tasks.TASKS)
def test_module_constants_derive_from_spec(task_id):
    mod, spec = tasks.get(task_id), tasks.SPECS[task_id]
    assert mod.SPEC is spec and spec.id == mod.ID == task_id
    assert (mod.X_KEYS, mod.Y_KEYS, mod.LATENT_X) == (tuple(INFER_SPECS[task_id][0]), tuple(INFER_SPECS[task_id][1]),
                                                      LATENT_X[task_id])


def test_derived_tables_equal_the_hand_written_ones():
    from icwm import infer
    from icwm.eval import eta, runner
    assert list(tasks.SPECS) == list(tasks.TASKS)
    assert list(eta.PRIMARY.items()) == list(PRIMARY.items())
    assert list(eta.ETA_PRIMARY.items()) == list(ETA_PRIMARY.items())
    assert runner.CONTEXT_TASKS == CONTEXT_TASKS
    assert list(infer.SPECS) == list(INFER_SPECS)
    for t, (xs, ys) in INFER_SPECS.items():
        assert [list(d.items()) for d in infer.SPECS[t]] == [list(xs.items()), list(ys.items())], t


def test_specs_load_without_the_channel_simulator():
    """Reading the specs (and the tables derived from them) must not import Sionna."""
    code = ("import sys; from icwm.eval import eta; from icwm.tasks.taskspec import TaskSpec; from icwm import tasks; "
            "assert callable(tasks.spec) and tasks.spec('bf').eta_metric == 'gain_ratio'; "
            "assert not [m for m in sys.modules if m.startswith('sionna')], 'sionna imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


GOOD = dict(id="t", x={"h": (2, "c"), "snr_db": (0, "f")}, y={"lam_p": (2, "f")}, primary="sum_rate", direction=1,
            latent_x=("snr_db",), latent=("snr_db",))


def test_spec_defaults_and_immutability():
    x = dict(GOOD["x"])
    spec = TaskSpec(**{**GOOD, "x": x})
    assert spec.eta_metric == "sum_rate" and spec.context is False
    assert spec.x_keys == ("h", "snr_db") and spec.y_keys == ("lam_p",) and spec.latent_keys == ("latent_snr_db",)
    x["extra"] = (0, "f")
    assert "extra" not in spec.x, "the spec must not alias the caller's dict"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.primary = "other"
    assert TaskSpec(**{**GOOD, "eta_metric": "gain_ratio"}).eta_metric == "gain_ratio"


@pytest.mark.parametrize("change, field", [
    ({"id": ""}, "TaskSpec.id"),
    ({"x": {}}, "t.x"),
    ({"x": {"h": (2, "z")}}, r"t.x\['h'\]"),
    ({"x": {"h": (-1, "c")}}, r"t.x\['h'\]"),
    ({"x": {"h": (2.0, "c")}}, r"t.x\['h'\]"),
    ({"x": {"h": 2}}, r"t.x\['h'\]"),
    ({"y": {}}, "t.y"),
    ({"y": {"h": (2, "c")}}, "t.y"),                                # a label key that is also an input
    ({"primary": ""}, "t.primary"),
    ({"direction": 0}, "t.direction"),
    ({"direction": True}, "t.direction"),
    ({"latent_x": ("h_missing",), "latent": ("h_missing",)}, "t.latent_x"),
    ({"latent": ()}, "t.latent_x"),                                 # an omitted input that is no theta
    ({"latent": ("snr_db", "snr_db")}, "t.latent"),
    ({"latent": "snr_db"}, "t.latent"),
    ({"context": "yes"}, "t.context"),
    ({"trivial": ""}, "t.trivial"),
    ({"trivial": "zero", "first_guess": "mrt"}, "t.first_guess"),  # a first guess other than the trivial bar
])
def test_bad_specs_name_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        TaskSpec(**{**GOOD, **change})


@pytest.mark.parametrize("task_id", [t for t in tasks.TASKS if tasks.spec(t).first_guess])
def test_first_guess_predicts_the_label_from_the_query_alone(task_id: str):
    """``common.first_guess``: the named baseline in the labels' shapes, unchanged by the query's label and by
    whether the input is in latent form (the SNR omitted)."""
    from icwm.tasks.common import first_guess
    task = tasks.get(task_id)
    sample = {k: v[0] for k, v in task.generate(tiny_cfg(), 1, 3, torch.Generator().manual_seed(0)).items()}
    x = {k: sample[k] for k in task.X_KEYS}
    y_shapes = {k: tuple(sample[k].shape[1:]) for k in task.Y_KEYS}
    guess = first_guess(task, x, y_shapes)
    ref = task.baselines({k: v[:, None] for k, v in sample.items()})[task.SPEC.first_guess]
    assert set(guess) == set(task.Y_KEYS)
    for k in task.Y_KEYS:
        torch.testing.assert_close(guess[k], ref[k][:, 0])
        assert guess[k].shape == sample[k].shape
    latent = first_guess(task, {k: v for k, v in x.items() if k not in task.LATENT_X}, y_shapes)
    for k in task.Y_KEYS:
        torch.testing.assert_close(latent[k], guess[k])
