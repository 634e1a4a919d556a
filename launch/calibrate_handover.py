"""Calibrate the ce LMMSE handover gate of a model on the seen link family (icwm.eval.handover_gate).

    python launch/calibrate_handover.py [--config YAML] [key=value ...]
    (keys of icwm.eval.handover_gate.GateConfig: model=shipped|DIR family=... episodes=96 out=... apply_to=DIR)

Prints the pooled NMSE (dB) of the blends per pair position, the fitted (a, b) and its cost beside the model's
own gate; writes them to ``out`` (JSON); with ``apply_to=DIR`` saves the model with the fitted gate there.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from icwm.config import entry_config  # noqa: E402


def config_class() -> type:
    from icwm.eval.handover_gate import GateConfig
    return GateConfig


def main(argv: list[str] | None = None) -> int:
    cfg = entry_config(sys.argv[1:] if argv is None else argv, __doc__, "calibrate_handover", config_class)
    if isinstance(cfg, int):
        return cfg
    from icwm.config import report
    try:
        calibrate(cfg)
    except (ValueError, OSError) as err:   # no such model / family, corrupt weights, a model without the handover
        return report("calibrate_handover", err)
    return 0


def calibrate(cfg) -> None:
    """Fit the gate, print and write the table, and save the model with it when ``cfg.apply_to`` is set."""
    from icwm.data.config import load_family
    from icwm.eval.handover_gate import BLENDS, blend_errors, fit_gate, gate_cost, handover_of, pooled_db
    from icwm.infer import FewShotModel
    fsm = FewShotModel.from_pretrained(None if cfg.model == "shipped" else cfg.model)
    model = fsm.model.eval()
    ho = handover_of(model)
    systems = load_family(cfg.family)
    db = pooled_db(blend_errors(model, systems, cfg))
    own = (float(ho.gate_a.detach()), float(ho.gate_b.detach()))
    a, b = fit_gate(db)
    print("j   " + " ".join(f"g={g:<5.3g}" for g in BLENDS))
    for j in sorted({j for j, _ in db}):
        print(f"{j:<3d} " + " ".join(f"{db[(j, g)]:7.2f}" for g in BLENDS))
    res = {"fitted": {"a": a, "b": b, "cost_db": gate_cost(db, a, b)},
           "model": {"a": own[0], "b": own[1], "cost_db": gate_cost(db, *own)},
           "family": cfg.family, "systems": [s.name for s in systems], "episodes_per_system": cfg.episodes,
           "pairs": cfg.pairs, "seed": cfg.seed, "model_path": cfg.model,
           "pooled_db": {f"{j},{g}": v for (j, g), v in db.items()}}
    print(f"fitted a = {a}, b = {b}: summed {res['fitted']['cost_db']:.2f} dB; the model's a = {own[0]:.3g}, "
          f"b = {own[1]:.3g}: {res['model']['cost_db']:.2f} dB")
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.out).write_text(json.dumps(res, indent=1))
    if cfg.apply_to:
        ho.gate_a.data.fill_(a)
        ho.gate_b.data.fill_(b)
        print(f"saved {save_with_gate(fsm, cfg, a, b)}")


def save_with_gate(fsm, cfg, a: float, b: float) -> Path:
    """``save_pretrained`` to ``cfg.apply_to``, the source's metadata carried over with a note of the new gate."""
    from icwm.infer import METADATA, SHIPPED, save_pretrained
    src = Path(SHIPPED if cfg.model == "shipped" else cfg.model) / METADATA
    meta = {k: v for k, v in (json.loads(src.read_text()) if src.is_file() else {}).items()
            if k not in ("parameters", "torch")}
    note = (f"ce handover gate set to a = {a}, b = {b} by launch/calibrate_handover.py ({cfg.family}, "
            f"{cfg.episodes} episodes per system, seed {cfg.seed!r})")
    meta["post_training"] = "; ".join(x for x in (meta.get("post_training"), note) if x)
    return save_pretrained(fsm.model, fsm.cfg, cfg.apply_to, meta)


if __name__ == "__main__":
    sys.exit(main())
