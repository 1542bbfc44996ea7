"""Privacy of what training writes: no Hub token in any file, no local path in what gets pushed."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from hf_covid.data.synthetic import generate_radiography
from hf_covid.hub import publishable_files
from hf_covid.model_card import render_model_card
from hf_covid.recipes import RECIPE_DIR
from hf_covid.training import train_from_recipe

ENVIRONMENT_TOKEN = "hf_sentinel_from_environment_9f3b2c"
ARGUMENT_TOKEN = "hf_sentinel_from_hub_token_argument_51d7e0"
TINY_CNN_LSTM = {
    "widths": [4, 8],
    "classifier_hidden_sizes": [8],
    "lstm_hidden_size": 8,
    "sequence_width": 2,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny model trained with a token in ``HF_TOKEN`` and another in ``hub_token``: (the
    folder that holds data and output, the checkpoint folder)."""
    root = tmp_path_factory.mktemp("privacy")
    data = generate_radiography(
        root / "data", images_per_class=6, image_size=48, mask_size=48, progress=False
    )
    output = root / "checkpoint"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_TOKEN", ENVIRONMENT_TOKEN)
        train_from_recipe(
            RECIPE_DIR / "cnn_lstm_synthetic.yaml",
            {
                "data_dir": str(data),
                "output_dir": str(output),
                "config_overrides": TINY_CNN_LSTM,
                "image_size": 32,
                "num_train_epochs": 1,
                "per_device_train_batch_size": 8,
                "per_device_eval_batch_size": 16,
                "disable_tqdm": True,
                "logging_steps": 1,
                "early_stopping_patience": 0,
                "hub_token": ARGUMENT_TOKEN,
                "report_to": "tensorboard",
            },
        )
    return root, output


def _contents(path: Path) -> list[tuple[str, bytes]]:
    """A file's bytes, and for a zip archive (``torch.save`` writes ``training_args.bin`` as one)
    every member's uncompressed bytes too."""
    contents = [(str(path), path.read_bytes())]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            contents += [(f"{path}:{name}", archive.read(name)) for name in archive.namelist()]
    return contents


def test_no_file_that_training_writes_holds_a_token(trained):
    _, output = trained
    files = [path for path in output.rglob("*") if path.is_file()]
    assert any(path.name == "training_args.bin" for path in files)  # the Trainer's pickle
    assert any(path.name.startswith("events.out.tfevents") for path in files)  # tensorboard
    for path in files:
        for where, data in _contents(path):
            for token in (ENVIRONMENT_TOKEN, ARGUMENT_TOKEN):
                assert token.encode() not in data, f"{token} in {where}"


def test_files_that_get_pushed_hold_no_local_path(trained):
    root, output = trained
    local_paths = {str(root), str(root.resolve()), os.getcwd(), str(Path.home())}
    pushed = publishable_files(output)
    assert "model.safetensors" in pushed and "eval_results.json" in pushed
    texts = {name: (output / name).read_bytes() for name in pushed}
    texts["README.md (rendered for the Hub)"] = str(
        render_model_card(output, repo_id="someone/covid-model")
    ).encode()
    for name, data in texts.items():
        for local_path in local_paths:
            assert local_path.encode() not in data, f"{local_path} in {name}"
