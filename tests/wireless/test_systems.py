"""System-configuration families (configs/systems/*.yaml): every file loads, the channel layer accepts every
system, the families span what they claim, and bad input names the field."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from icwm.config import load_config
from icwm.wireless import channels
from icwm.wireless.sysconfig import SystemConfig

SYSTEMS = Path(__file__).resolve().parents[2] / "configs" / "systems"
FILES = sorted(SYSTEMS.glob("*.yaml"))


def test_expected_families_exist():
    assert {p.stem for p in FILES} >= {"seen", "unseen", "zheng_dai", "llm4wm", "debug"}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_family_loads_and_passes_channel_checks(path):
    systems = channels.load_family(path)
    assert systems and all(isinstance(s, SystemConfig) for s in systems)
    names = [s.name for s in systems]
    assert len(set(names)) == len(names)


def test_seen_and_unseen_families_are_disjoint_where_claimed():
    seen, unseen = channels.load_family(SYSTEMS / "seen.yaml"), channels.load_family(SYSTEMS / "unseen.yaml")
    assert {s.scenario for s in seen} == {"uma", "umi"} and {s.num_ant for s in seen} == {32, 64, 128}
    assert {s.los for s in seen} == {True, False, None} and {s.carrier_hz for s in seen} == {2.4e9, 1.9e9}
    assert {s.num_users for s in seen} <= set(range(2, 9))
    assert "rma" in {s.scenario for s in unseen} and 3.5e9 in {s.carrier_hz for s in unseen}
    assert {96, 256} <= {s.num_ant for s in unseen} and 10 in {s.num_users for s in unseen}
    assert any(s.snr_db[1] < 5 or s.snr_db[0] > 20 for s in unseen)
    assert any(s.speed_kmh[0] > 100 for s in unseen)
    zd = channels.load_family(SYSTEMS / "zheng_dai.yaml")
    assert all(s.num_ant == 128 and s.los is False and s.num_subcarriers == 48 for s in zd)
    assert {s.num_users for s in zd} == {4, 6, 8}


def test_debug_systems_generate_tiny_drops():
    for i, cfg in enumerate(channels.load_family(SYSTEMS / "debug.yaml")):
        d = channels.generate_drops(cfg, 2, 2, torch.Generator().manual_seed(i))
        assert d.h.shape == (2, cfg.num_users, 2, cfg.num_subcarriers, cfg.num_ant)
        assert torch.isfinite(d.h.real).all()


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "fam.yaml"
    p.write_text(body)
    return p


@pytest.mark.parametrize("body,field", [
    ("systems:\n  - {name: a, scenario: inh}\n", "scenario"),
    ("systems:\n  - {name: a, carrier_ghz: 2.4}\n", "carrier_ghz"),
    ("systems:\n  - {name: a, snr_db: [20.0, 5.0]}\n", "snr_db"),
    ("systems:\n  - {name: a, speed_kmh: []}\n", "speed_kmh"),
    ("systems:\n  - {name: a, scenario: rma, bs_height_m: 35.0, carrier_hz: 40.0e9}\n", "carrier_hz"),
    ("systems:\n  - {name: a, distance_m: [2.0, 100.0]}\n", "distance_m"),
    ("systems:\n  - {name: a, scenario: rma, bs_height_m: 35.0, ue_height_m: 20.0}\n", "ue_height_m"),
    ("systems:\n  - {name: a, array: {kind: upa, rows: 0, cols: 8}}\n", "array.rows"),
    ("systems: []\n", "systems"),
])
def test_bad_family_names_the_field(tmp_path, body, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        channels.load_family(_write(tmp_path, body))


def test_generate_checks_its_arguments():
    cfg = load_config(SystemConfig, overrides=["scenario=umi", "bs_height_m=10.0", "carrier_hz=200e9"])
    with pytest.raises(ValueError, match="carrier_hz"):
        channels.generate_drops(cfg, 1, 1, torch.Generator())
    ok = load_config(SystemConfig, overrides=["num_users=1", "array.kind=ula", "array.cols=1"])
    with pytest.raises(ValueError, match="n_time"):
        channels.generate_drops(ok, 1, 0, torch.Generator())
    bad_dual = load_config(SystemConfig, overrides=["scenario=rma", "bs_height_m=35.0", "dual_band.mmw_carrier_hz=60e9"])
    with pytest.raises(ValueError, match="dual_band.mmw_carrier_hz"):
        channels.generate_dual_band(bad_dual, 1, torch.Generator())


def test_pretraining_data_holds_no_unseen_latent_system():
    """The shipped recipe's data (configs/data/small_nominal.yaml) never trains on a latent unseen system's name; the
    precoding ones are unseen by their geometry too (scenario, carrier, array and user count together), not only by
    their SNR range (det / link / dual have systems unseen by their SNR, speed or offset ranges alone)."""
    from icwm.data.config import DataConfig
    root = SYSTEMS.parents[1]
    data = load_config(DataConfig, root / "configs" / "data" / "small_nominal.yaml")
    paths = data.families + [p for fams in data.task_families.values() for p in fams]
    train = [s for p in set(paths) for s in channels.load_family(root / p)]

    def geometry(s: SystemConfig) -> tuple:
        return s.scenario, s.carrier_hz, s.array.kind, s.array.rows, s.array.cols, s.num_users

    assert "configs/systems/latent_seen_more.yaml" in data.families
    for name in ("latent_unseen", "det_latent_unseen", "link_latent_unseen", "dual_latent_unseen"):
        unseen = channels.load_family(SYSTEMS / f"{name}.yaml")
        assert {s.name for s in unseen}.isdisjoint({s.name for s in train}), name
        if name == "latent_unseen":
            assert {geometry(s) for s in unseen}.isdisjoint({geometry(s) for s in train}), name


def test_link_validation_family_lies_off_the_training_ranges_and_outside_every_evaluation():
    """configs/systems/link_latent_val.yaml (the choice of ``model.grid_k0_first_guess``): each link's SNR or speed
    range lies outside every training link's, its names are in no other family, and no eval config reads it."""
    from icwm.data.config import DataConfig
    root = SYSTEMS.parents[1]
    data = load_config(DataConfig, root / "configs" / "data" / "small_nominal.yaml")
    train = [s for p in set(data.task_families["cp"]) for s in channels.load_family(root / p)]
    val = channels.load_family(SYSTEMS / "link_latent_val.yaml")
    lo = lambda key: min(getattr(s, key)[0] for s in train)                    # noqa: E731
    hi = lambda key: max(getattr(s, key)[1] for s in train)                    # noqa: E731
    off = lambda s, key: getattr(s, key)[1] <= lo(key) or getattr(s, key)[0] >= hi(key)  # noqa: E731
    assert train and len(val) == 3 and all(off(s, "snr_db") or off(s, "speed_kmh") for s in val)
    others = {s.name for p in SYSTEMS.glob("*.yaml") if p.name != "link_latent_val.yaml"
              for s in channels.load_family(p)}
    assert {s.name for s in val}.isdisjoint(others)
    assert not any("latent_val" in p.read_text() for p in (root / "configs" / "eval").glob("*.yaml"))
