"""Evaluation of the native model against the classical baselines on seen / unseen system families.

``EvalConfig`` (config), ``run`` (episodes -> result rows), ``write_csv`` / ``markdown`` / ``targets`` (report),
``plot_all`` (PNG). Entry point: ``python launch/evaluate.py --config configs/eval/<name>.yaml [key=value ...]``.
"""
from icwm.eval.config import EvalConfig, TargetsConfig
from icwm.eval.runner import EvalResult, load_families, run

__all__ = ["EvalConfig", "TargetsConfig", "EvalResult", "load_families", "run"]
