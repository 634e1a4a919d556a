"""The native in-context wireless model: ``ModelConfig``, ``ICWM``, ``build_model``, ``count_parameters``.

No distributed code lives here (DeepSpeed setup is in ``icwm.train``).
"""
from icwm.model.config import FLAVOURS, ModelConfig
from icwm.model.icwm import ICWM, build_model, count_parameters

__all__ = ["FLAVOURS", "ModelConfig", "ICWM", "build_model", "count_parameters"]
