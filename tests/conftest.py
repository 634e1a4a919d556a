"""Test-wide fixtures: each test starts from a fixed seed and the default dtype is restored after it."""
import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _reseed_and_restore_dtype():
    dtype = torch.get_default_dtype()
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    yield
    torch.set_default_dtype(dtype)


@pytest.fixture
def rng() -> torch.Generator:
    """An explicit generator with a fixed seed."""
    return torch.Generator().manual_seed(1234)
