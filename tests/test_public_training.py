"""Training on a collections root: the dual-channel model with the lung U-Net's masks.

In the public collections only the ieee8023 COVID X-rays have human lung masks, so the
dual-channel model trains only when ``mask_model`` gives every image the U-Net's mask.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Image
from test_public_data import write_collections

from hf_covid.checkpoints import RUN_RECORD_FILE
from hf_covid.lung_masks import HUMAN_MASK_COLUMN
from hf_covid.models.image_processing_chest import ChestImageProcessor
from hf_covid.recipes import RECIPE_DIR
from hf_covid.registry import get_model_family
from hf_covid.training import ConfigurationError, DataArguments, load_training_data
from hf_covid.training.run import train_from_recipe

IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def collections_root(tmp_path_factory) -> Path:
    return write_collections(tmp_path_factory.mktemp("collections"))


@pytest.fixture(scope="module")
def lung_unet_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised tiny lung U-Net saved as a checkpoint folder."""
    folder = tmp_path_factory.mktemp("lung_unet")
    get_model_family("lung_unet").tiny_model().save_pretrained(folder)
    ChestImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return folder


def _data_args(root: Path, tmp_path: Path, **extra) -> DataArguments:
    return DataArguments(
        data_dir=str(root),
        classes=["COVID", "Normal", "Viral Pneumonia"],
        image_size=IMAGE_SIZE,
        cache_dir=str(tmp_path / "cache"),
        **extra,
    )


def test_dual_channel_on_a_collections_root_without_mask_model_names_the_option(
    collections_root, tmp_path
):
    family = get_model_family("dual_channel")
    with pytest.raises(ConfigurationError, match="mask_model"):
        load_training_data(family, _data_args(collections_root, tmp_path))


def test_mask_model_gives_every_image_the_unet_mask_and_keeps_the_human_ones(
    collections_root, lung_unet_checkpoint, tmp_path
):
    family = get_model_family("dual_channel")
    data = load_training_data(
        family, _data_args(collections_root, tmp_path, mask_model=str(lung_unet_checkpoint))
    )
    splits = data.splits.with_format(None)
    assert all(all(split["mask_available"]) for split in splits.values())
    human = [
        value
        for split in splits.values()
        for value in split.cast_column(HUMAN_MASK_COLUMN, Image(decode=False))[HUMAN_MASK_COLUMN]
    ]
    # The tree has one human mask (ieee8023 c1-0.png); it is kept, not used as the input mask.
    assert sum(value is not None for value in human) == 1
    masks = [np.frombuffer(mask, np.uint8) for mask in splits["train"]["lung_mask"]]
    assert all(mask.size == IMAGE_SIZE * IMAGE_SIZE and set(mask) <= {0, 1} for mask in masks)


@pytest.mark.parametrize(
    ("model_type", "problem"),
    [("lung_unet", "uses no lung mask here"), ("cnn_lstm", "uses no lung mask here")],
)
def test_mask_model_for_a_model_without_an_input_mask_is_refused(
    model_type, problem, collections_root, lung_unet_checkpoint, tmp_path
):
    args = _data_args(collections_root, tmp_path, mask_model=str(lung_unet_checkpoint))
    with pytest.raises(ConfigurationError, match=problem):
        load_training_data(get_model_family(model_type), args)


def test_mask_model_that_is_not_a_segmentation_checkpoint_is_refused(collections_root, tmp_path):
    classifier = tmp_path / "classifier"
    get_model_family("cnn_lstm").tiny_model(["COVID", "Normal"]).save_pretrained(classifier)
    args = _data_args(collections_root, tmp_path, mask_model=str(classifier))
    with pytest.raises(ConfigurationError, match="not a lung U-Net"):
        load_training_data(get_model_family("dual_channel"), args)


def test_missing_mask_model_names_the_option(collections_root, tmp_path):
    args = _data_args(collections_root, tmp_path, mask_model=str(tmp_path / "no_such_unet"))
    with pytest.raises(ConfigurationError, match="mask_model .*no_such_unet"):
        load_training_data(get_model_family("dual_channel"), args)


def test_dual_channel_public_recipe_trains_from_a_collections_root_and_records_the_unet(
    collections_root, lung_unet_checkpoint, tmp_path
):
    output_dir = tmp_path / "dual_channel"
    train_from_recipe(
        RECIPE_DIR / "dual_channel_public.yaml",
        {
            "data_dir": str(collections_root),
            "mask_model": str(lung_unet_checkpoint),
            "output_dir": str(output_dir),
            "cache_dir": str(tmp_path / "cache"),
            "config_overrides": {"widths": [4, 8], "classifier_hidden_sizes": [8]},
            "image_size": IMAGE_SIZE,
            "num_train_epochs": 1,
            "per_device_train_batch_size": 8,
            "disable_tqdm": True,
            "early_stopping_patience": 0,
        },
    )
    record = json.loads((output_dir / RUN_RECORD_FILE).read_text())
    # The run record names the U-Net by its folder name, never the local path.
    assert record["data"]["mask_model"] == lung_unet_checkpoint.name
    assert (output_dir / "model.safetensors").is_file()
