"""det head: its first guess is the configured classical detector (LMMSE or EP), corrected by the head."""
import pytest
import torch

from icwm.model import ModelConfig
from icwm.model.icwm import build_model
from icwm.wireless.detection import ep_detect, lmmse_detect, noise_var_from_snr

from tests.model.model_batches import random_batch


@pytest.mark.parametrize("anchor", ["lmmse", "ep"])
def test_det_prediction_is_the_anchor_plus_the_heads_correction(anchor: str):
    cfg = ModelConfig.flavour("debug", det_anchor=anchor)
    model = build_model(cfg).eval()
    with torch.no_grad():                                   # silence the correction: the output is the first guess
        model.heads["det"].out.weight.zero_()
        model.heads["det"].out.bias.zero_()
        batch = random_batch("det", K=3, R=5, S=4, k=2)
        pred = model(batch)["x"]                             # [B, P, S, K]
    nv = noise_var_from_snr(batch["snr_db"], batch["h"].shape[-1])
    fn = ep_detect if anchor == "ep" else lambda h, y, n: lmmse_detect(h, y, n, unbiased=False)
    ref = fn(batch["h"], batch["y"], nv)[0]
    torch.testing.assert_close(pred, ref.to(torch.complex64), rtol=1e-4, atol=1e-4)


def test_unknown_det_anchor_is_rejected():
    with pytest.raises(ValueError, match="det_anchor"):
        ModelConfig.flavour("debug", det_anchor="ml")
