"""Diagnosis, not a setting: cp's latent evaluation (ks 0 / 1 / 4 / 16) with the ICR ridge of pair 1 (one
demonstration) of cp's head multiplied by FACTOR, the model otherwise unchanged.

    OMP_NUM_THREADS=2 python docs/results/icr_k1_s31/ridge_k1.py FACTOR OUT_DIR [model]    (model: shipped or a path)
"""
import sys

sys.path.insert(0, "launch")
import evaluate  # noqa: E402
from icwm.config import load_cli  # noqa: E402
from icwm.eval.config import EvalConfig  # noqa: E402
from icwm.model.icr import InContextRidge  # noqa: E402


def scale_j1(factor: dict) -> None:
    """Patch ``InContextRidge.ridge``: a ridge module marked ``scale_j1`` gets its j = 1 entry multiplied by
    ``factor["j1"]`` (read at each call, so the caller may change it)."""
    schedule = InContextRidge.ridge

    def ridge(self, p):
        r = schedule(self, p)
        if getattr(self, "scale_j1", False) and p > 1:
            r = r.clone()
            r[1] = r[1] * factor["j1"]
        return r

    InContextRidge.ridge = ridge


def main(factor: float, out: str, model: str) -> None:
    scale_j1({"j1": factor})
    load = evaluate.load_model

    def load_model(*a, **k):
        m, desc = load(*a, **k)
        m.heads["cp"].fit.icr.scale_j1 = True           # cp's head only
        return m, desc

    evaluate.load_model = load_model
    evaluate.evaluate(load_cli(EvalConfig, ["--config", "configs/eval/latent.yaml", f"model={model}",
                                            "ks=[0,1,4,16]", "tasks=[cp]", "device=cpu", f"out_dir={out}"]))


if __name__ == "__main__":
    main(float(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "shipped")
