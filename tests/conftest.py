"""Test isolation: offline Hub, private caches, one torch thread, fixed seeds.

Every test starts from seed 0, and so does every fixture shared by several tests (module, class,
package or session scope): such a fixture runs before its first test's own seeding, in whatever
order xdist hands the tests out, so it is seeded when it is set up (``pytest_fixture_setup``)
and the random weights and data it makes do not depend on which test asked first.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile

# Set before anything imports huggingface_hub, datasets or gradio.
_SESSION_HOME = tempfile.mkdtemp(prefix="hf_covid_tests_")
atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HOME"] = os.path.join(_SESSION_HOME, "hf_home")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_SESSION_HOME, "datasets_cache")
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["GRADIO_TEMP_DIR"] = os.path.join(_SESSION_HOME, "gradio")
os.environ["MPLCONFIGDIR"] = os.path.join(_SESSION_HOME, "matplotlib")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["MPLBACKEND"] = "Agg"
os.environ.pop("HF_TOKEN", None)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@pytest.fixture(autouse=True)
def _seed_everything():
    seed_everything()
    yield


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Seed before a shared fixture's body runs (after the fixtures it depends on)."""
    if fixturedef.scope != "function":
        seed_everything()
    return (yield)
