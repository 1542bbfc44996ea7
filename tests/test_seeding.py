"""Shared fixtures start from the seed, whichever test sets them up first (``conftest.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def _first_draws() -> tuple[float, float]:
    """What torch and numpy give first after seeding with 0."""
    torch.manual_seed(0)
    np.random.seed(0)
    return float(torch.rand(())), float(np.random.rand())


@pytest.fixture(scope="module")
def shared_weights() -> tuple[float, float]:
    return float(torch.rand(())), float(np.random.rand())


@pytest.fixture(scope="module")
def weights_after_other_draws(shared_weights) -> tuple[float, float]:
    """Set up after another shared fixture drew from the same generators."""
    return float(torch.rand(())), float(np.random.rand())


def test_a_shared_fixture_starts_from_the_seed(shared_weights):
    assert shared_weights == _first_draws()


def test_a_shared_fixture_does_not_depend_on_what_ran_before_it(weights_after_other_draws):
    torch.rand(100), np.random.rand(100)  # this test's own draws come before the fixture's use
    assert weights_after_other_draws == _first_draws()
