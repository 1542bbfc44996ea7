"""Test isolation: offline Hub, private caches, one torch thread, fixed seeds."""

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


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
