"""Publishing to the Hub, for real, against the Hub-compatible server of tests/hub_server.py."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import traceback
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value, load_dataset
from hub_server import HubServer, client_environment, point_clients_at
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError
from PIL import Image as PILImage

from hf_covid.checkpoints import DatasetRecord, EvaluationResults
from hf_covid.data.public.licenses import RestrictedLicenseError
from hf_covid.evaluation import bootstrap_confidence_intervals, classification_metrics
from hf_covid.hub import push_checkpoint, push_dataset
from hf_covid.model_card import WIDGET_EXAMPLE_FILE
from hf_covid.models import RADIOGRAPHY_LABELS, CNNLSTMConfig, CNNLSTMForImageClassification
from hf_covid.models.image_processing_chest import ChestImageProcessor

pytestmark = pytest.mark.slow  # every test here starts a server

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 32


@pytest.fixture()
def token() -> str:
    return "hf_" + secrets.token_hex(16)


@pytest.fixture()
def hub(tmp_path, token, monkeypatch):
    """A running Hub-compatible server that this process's clients talk to."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with HubServer(tmp_path / "hub_storage", token=token) as server:
        point_clients_at(monkeypatch, server)
        yield server


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A CNN+LSTM trained for a few steps, saved as training saves it, with Trainer leftovers."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("checkpoint")
    config = CNNLSTMConfig(widths=[4, 8], lstm_hidden_size=8, classifier_hidden_sizes=[8])
    model = CNNLSTMForImageClassification(config)
    images = torch.rand(16, 1, IMAGE_SIZE, IMAGE_SIZE)
    labels = torch.arange(16) % len(RADIOGRAPHY_LABELS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        model(pixel_values=images, labels=labels).loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        probabilities = model(pixel_values=images).logits.softmax(-1).numpy()
    model.save_pretrained(folder)
    ChestImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    metrics = classification_metrics(labels.numpy(), probabilities, RADIOGRAPHY_LABELS)
    intervals = bootstrap_confidence_intervals(
        labels.numpy(), probabilities, RADIOGRAPHY_LABELS, n_resamples=50
    )
    EvaluationResults(
        model_type=config.model_type,
        task="image-classification",
        split="test",
        class_names=list(RADIOGRAPHY_LABELS),
        metrics=metrics,
        confidence_intervals={name: list(value) for name, value in intervals.items()},
        dataset=DatasetRecord(
            kind="radiography",
            name="COVID-19 Radiography Database",
            synthetic=True,
            hub_id="tester/tiny-radiography",
        ),
    ).save(folder / "eval_results.json")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 3, "log_history": []}))
    (folder / "figures").mkdir()
    PILImage.new("L", (8, 8)).save(folder / "figures" / "confusion_matrix.png")
    # Trainer leftovers that must never reach the Hub (pickles and optimizer state).
    for name in ("training_args.bin", "optimizer.pt", "rng_state.pth"):
        (folder / name).write_bytes(b"\x80\x04pickle")
    intermediate = folder / "checkpoints" / "checkpoint-3"
    intermediate.mkdir(parents=True)
    (intermediate / "optimizer.pt").write_bytes(b"\x80\x04pickle")
    (intermediate / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    return folder


def test_push_checkpoint_uploads_complete_folder_in_one_commit_without_pickles(
    hub, checkpoint, token
):
    url = push_checkpoint(checkpoint, "tester/tiny-cnn-lstm", token=token)

    files = hub.files("tester/tiny-cnn-lstm")
    assert url.startswith(f"{hub.url}/tester/tiny-cnn-lstm/commit/")
    assert hub.commit_count("tester/tiny-cnn-lstm") == 2  # the repo's initial commit + ours
    expected = {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "README.md",
        "eval_results.json",
        "trainer_state.json",
        "figures/confusion_matrix.png",
        "configuration_cnn_lstm.py",
        "modeling_cnn_lstm.py",
        "pipeline_chest.py",
        WIDGET_EXAMPLE_FILE,
    }
    assert expected <= set(files)
    assert files[WIDGET_EXAMPLE_FILE].startswith(b"\x89PNG")
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth"))]
    assert not [name for name in files if name.startswith("checkpoints/")]
    assert "model.safetensors" in hub.lfs_paths("tester/tiny-cnn-lstm")
    assert files["model.safetensors"] == (checkpoint / "model.safetensors").read_bytes()


def test_push_checkpoint_creates_a_private_repo_when_asked(hub, checkpoint, token):
    push_checkpoint(checkpoint, "tester/private-model", private=True, token=token)

    assert hub.repos[("model", "tester/private-model")].private
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).model_info("tester/private-model")
    assert HfApi(token=token).model_info("tester/private-model").private


def test_pushed_card_carries_the_metrics_in_model_index(hub, checkpoint, token):
    push_checkpoint(checkpoint, "tester/tiny-cnn-lstm", token=token)

    readme = hub.files("tester/tiny-cnn-lstm")["README.md"].decode()
    metadata = yaml.safe_load(readme.split("---")[1])
    results = metadata["model-index"][0]["results"][0]
    metrics = {metric["type"]: metric["value"] for metric in results["metrics"]}
    accuracy = json.loads((checkpoint / "eval_results.json").read_text())["metrics"]["accuracy"]
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert results["dataset"]["split"] == "test"
    assert results["dataset"]["type"] == metadata["datasets"][0] == "tester/tiny-radiography"
    widget_url = f"{hub.url}/tester/tiny-cnn-lstm/resolve/main/{WIDGET_EXAMPLE_FILE}"
    assert metadata["widget"][0]["src"] == widget_url
    with urllib.request.urlopen(widget_url, timeout=10) as response:  # the Hub serves it
        assert response.read().startswith(b"\x89PNG")
    assert (
        "AutoModelForImageClassification.from_pretrained(repo_id, trust_remote_code=True)" in readme
    )
    assert '"tester/tiny-cnn-lstm"' in readme


_LOAD_WITHOUT_HF_COVID = """
import os, sys
repo_root, environment = os.path.realpath(sys.argv[1]), os.path.realpath(sys.prefix)


def outside_repo(entry):  # the repo root may hold the virtual environment: keep that
    path = os.path.realpath(entry)
    return path.startswith(environment) or not path.startswith(repo_root)


sys.path[:] = [p for p in sys.path if p and "__editable__" not in p and outside_repo(p)]
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in getattr(h, "__module__", "")]
sys.path_importer_cache.clear()
try:
    import hf_covid
except ModuleNotFoundError:
    pass
else:
    sys.exit(f"hf_covid is importable from {hf_covid.__file__}")

import numpy as np
import torch
from transformers import AutoModelForImageClassification

model = AutoModelForImageClassification.from_pretrained(sys.argv[2], trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
pixel_values = torch.from_numpy(np.load(sys.argv[3]))
with torch.no_grad():
    logits = model.eval()(pixel_values=pixel_values).logits.numpy()
np.testing.assert_allclose(logits, np.load(sys.argv[4]), rtol=1e-5, atol=1e-6)
print("same logits", logits.shape)
"""


def test_pushed_checkpoint_loads_with_remote_code_where_hf_covid_is_missing(
    hub, checkpoint, token, tmp_path
):
    push_checkpoint(checkpoint, "tester/tiny-cnn-lstm", token=token)
    model = CNNLSTMForImageClassification.from_pretrained(checkpoint).eval()
    pixel_values = torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        logits = model(pixel_values=pixel_values).logits.numpy()
    np.save(tmp_path / "pixel_values.npy", pixel_values.numpy())
    np.save(tmp_path / "logits.npy", logits)
    (tmp_path / "load.py").write_text(_LOAD_WITHOUT_HF_COVID)
    environment = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HF_TOKEN")
    }
    environment.update(client_environment(hub), HF_HOME=str(tmp_path / "hf_home"))

    completed = subprocess.run(
        [sys.executable, "load.py", str(REPO_ROOT), "tester/tiny-cnn-lstm"]
        + [str(tmp_path / "pixel_values.npy"), str(tmp_path / "logits.npy")],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "same logits (2, 4)" in completed.stdout


def test_push_without_a_token_fails_before_any_request(hub, checkpoint):
    with pytest.raises(PermissionError, match="no Hugging Face token"):
        push_checkpoint(checkpoint, "tester/tiny-cnn-lstm")
    assert hub.requests == []


def test_rejected_token_fails_clearly_and_never_appears_in_errors_or_logs(
    hub, checkpoint, caplog, capfd
):
    wrong_token = "hf_" + secrets.token_hex(16)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(PermissionError, match="refused") as raised:
        push_checkpoint(checkpoint, "tester/tiny-cnn-lstm", token=wrong_token)

    shown = "".join(traceback.format_exception(raised.value))
    captured = capfd.readouterr()
    assert "401" in str(raised.value)
    for text in (shown, caplog.text, captured.out, captured.err):
        assert wrong_token not in text
        assert wrong_token[3:] not in text
    assert hub.repos == {}


def test_server_answers_unauthenticated_writes_with_hub_error(hub):
    request = urllib.request.Request(
        f"{hub.url}/api/repos/create",
        data=json.dumps({"name": "x", "type": "model"}).encode(),
        headers={"Content-Type": "application/json"},
    )

    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10)

    assert raised.value.code == 401
    assert "error" in json.loads(raised.value.read())
    assert hub.repos == {}


@pytest.mark.parametrize(
    ("removed", "message"),
    [
        ("config.json", "config.json is missing"),
        ("model.safetensors", "model.safetensors is missing"),
        ("modeling_cnn_lstm.py", "needs modeling_cnn_lstm.py"),
        ("layers.py", "needs layers.py"),
    ],
)
def test_push_refuses_an_incomplete_checkpoint(hub, checkpoint, token, tmp_path, removed, message):
    incomplete = tmp_path / "incomplete"
    shutil.copytree(checkpoint, incomplete)
    (incomplete / removed).unlink()

    with pytest.raises(ValueError, match=message):
        push_checkpoint(incomplete, "tester/tiny-cnn-lstm", token=token)
    assert hub.repos == {}


def _tiny_radiography_dataset(licenses: list[str] | None = None) -> DatasetDict:
    """Two splits of random images; with ``licenses``, a per-image licence column (cycled)."""
    columns = {
        "image": Image(),
        "label": ClassLabel(names=list(RADIOGRAPHY_LABELS)),
        "image_id": Value("string"),
        "source": Value("string"),
    }
    features = Features(columns | ({"license": Value("string")} if licenses else {}))
    rng = np.random.default_rng(0)

    def split(count: int, offset: int) -> Dataset:
        rows = {
            "image": [
                PILImage.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8))
                for _ in range(count)
            ],
            "label": [index % 4 for index in range(count)],
            "image_id": [f"img-{offset + index}" for index in range(count)],
            "source": ["https://example.org/collection-a"] * count,
        }
        if licenses:
            rows["license"] = [licenses[(offset + index) % len(licenses)] for index in range(count)]
        return Dataset.from_dict(rows, features=features)

    return DatasetDict(train=split(8, 0), test=split(4, 8))


def test_push_dataset_round_trip_with_card(hub, token, tmp_path):
    dataset = _tiny_radiography_dataset()

    url = push_dataset(dataset, "tester/tiny-radiography", token=token, synthetic=True)

    assert url.startswith(f"{hub.url}/datasets/tester/tiny-radiography/commit/")
    files = hub.files("tester/tiny-radiography", repo_type="dataset")
    assert any(name.startswith("data/train-") and name.endswith(".parquet") for name in files)
    readme = files["README.md"].decode()
    assert "## Splits" in readme and "Synthetic phantoms" in readme  # our card body
    metadata = yaml.safe_load(readme.split("---")[1])
    assert metadata["dataset_info"]["splits"]  # added by datasets' push_to_hub
    assert {config["config_name"] for config in metadata["configs"]} == {"default"}

    loaded = load_dataset("tester/tiny-radiography", cache_dir=str(tmp_path / "cache"))

    assert {name: len(split) for name, split in loaded.items()} == {"train": 8, "test": 4}
    assert loaded["train"].features["label"].names == list(RADIOGRAPHY_LABELS)
    assert loaded["test"]["image_id"] == dataset["test"]["image_id"]
    original = np.asarray(dataset["train"][3]["image"])
    assert np.array_equal(np.asarray(loaded["train"][3]["image"]), original)


RESTRICTED_MIX = ["CC BY-NC-SA 4.0", "Apache 2.0", "CC BY-NC-ND 4.0", "CC BY 4.0"]


def test_public_push_of_nc_or_nd_images_is_refused_before_any_upload(hub, token):
    dataset = _tiny_radiography_dataset(RESTRICTED_MIX)

    with pytest.raises(RestrictedLicenseError, match="refusing a public push") as raised:
        push_dataset(dataset, "tester/restricted", token=token)

    assert raised.value.restricted == {"CC BY-NC-SA 4.0": 3, "CC BY-NC-ND 4.0": 3}
    assert hub.repos == {} and hub.requests == []


def test_restricted_images_go_to_a_private_repo_or_public_when_told(hub, token):
    dataset = _tiny_radiography_dataset(RESTRICTED_MIX)

    push_dataset(dataset, "tester/restricted-private", token=token, private=True)
    push_dataset(dataset, "tester/restricted-public", token=token, allow_restricted=True)

    assert hub.repos[("dataset", "tester/restricted-private")].private
    assert not hub.repos[("dataset", "tester/restricted-public")].private
    readme = hub.files("tester/restricted-public", repo_type="dataset")["README.md"].decode()
    assert "| CC BY-NC-SA 4.0 | 3 | non-commercial (NC) |" in readme
    assert "| CC BY-NC-ND 4.0 | 3 | no derivatives (ND) |" in readme
    assert "| Apache 2.0 | 3 | open licence |" in readme


def test_public_push_of_openly_licensed_images_needs_no_permission(hub, token):
    push_dataset(_tiny_radiography_dataset(["CC BY 4.0", "Apache 2.0"]), "tester/open", token=token)

    readme = hub.files("tester/open", repo_type="dataset")["README.md"].decode()
    assert "| CC BY 4.0 | 6 | open licence |" in readme
