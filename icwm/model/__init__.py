"""The native in-context wireless model: ``ModelConfig``, ``ICWM``, ``build_model``, ``count_parameters``.

No distributed code lives here (DeepSpeed setup is in ``icwm.train``). docs/model.md explains the structure.
"""
from icwm.model.config import FLAVOURS, ModelConfig
from icwm.model.common import LATENT_SCALES
from icwm.model.icwm import ICWM, LATENT_HAT, build_model, count_parameters, probe_latents

__all__ = ["FLAVOURS", "ModelConfig", "ICWM", "LATENT_HAT", "LATENT_SCALES", "build_model", "count_parameters",
           "probe_latents"]
