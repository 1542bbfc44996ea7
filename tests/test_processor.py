"""ChestImageProcessor: resizing, channels, masks, inputs of every kind, save/load and Auto loading."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, PretrainedConfig
from transformers.dynamic_module_utils import get_class_from_dynamic_module
from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

import hf_covid.models.image_processing_chest as processing_module
from hf_covid.models.image_processing_chest import ChestImageProcessor

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@pytest.fixture
def xray():
    return np.random.default_rng(0).random((50, 70)).astype(np.float32)


def test_processor_resizes_to_224_and_rescales_to_unit_range(xray):
    batch = ChestImageProcessor()(images=xray, return_tensors="pt")
    pixels = batch["pixel_values"]
    assert pixels.shape == (1, 1, 224, 224) and pixels.dtype == torch.float32
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0
    assert ChestImageProcessor(size=64)(images=[xray, xray])["pixel_values"][0].shape == (1, 64, 64)


def test_processor_gives_three_normalised_channels_for_imagenet_backbones(xray):
    processor = ChestImageProcessor(
        size=32, num_channels=3, do_normalize=True, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
    )
    pixels = processor(images=xray, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32)
    plain = ChestImageProcessor(size=32)(images=xray, return_tensors="pt")["pixel_values"][0, 0]
    for channel in range(3):
        expected = (plain - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        torch.testing.assert_close(pixels[0, channel], expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="num_channels must be 1 or 3"):
        ChestImageProcessor(num_channels=2)
    with pytest.raises(ValueError, match="image_mean must hold 1 or num_channels=3"):
        ChestImageProcessor(num_channels=3, image_mean=[0.5, 0.5], image_std=[0.2])


def test_processor_treats_pil_numpy_and_tensor_inputs_alike(xray):
    as_uint8 = np.round(xray * 255).astype(np.uint8)
    processor = ChestImageProcessor(size=32)
    inputs = [
        Image.fromarray(as_uint8),
        Image.fromarray(as_uint8).convert("RGB"),
        as_uint8,
        as_uint8.astype(np.float32) / 255,
        torch.from_numpy(as_uint8)[None],
        Image.fromarray(as_uint8.astype(np.uint16) * 257),  # 16-bit: rescaled by bit depth
    ]
    outputs = processor(images=inputs, return_tensors="pt")["pixel_values"]
    for output in outputs[1:]:
        torch.testing.assert_close(output, outputs[0], atol=2 / 255, rtol=0)


def test_processor_resizes_masks_with_nearest_neighbour_and_binarises(xray):
    mask = np.zeros((50, 70), dtype=np.uint8)
    mask[10:40, 5:30] = 255
    label_map = (mask > 0).astype(np.int64)  # 0/1 label maps work too
    batch = ChestImageProcessor(size=40)(
        images=[xray, xray], masks=[Image.fromarray(mask), label_map], return_tensors="pt"
    )
    lung = batch["lung_mask"]
    assert lung.shape == (2, 1, 40, 40)
    assert set(lung.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(lung[0], lung[1])
    assert lung[0].mean().item() == pytest.approx(mask.mean() / 255, abs=0.03)
    with pytest.raises(ValueError, match="2 images but 1 masks"):
        ChestImageProcessor()(images=[xray, xray], masks=[mask])


def test_processor_round_trips_through_preprocessor_config_json(tmp_path, xray):
    processor = ChestImageProcessor(
        size={"height": 48, "width": 40}, num_channels=3, do_normalize=True,
        image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
    )  # fmt: skip
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "ChestImageProcessor"
    assert saved["auto_map"] == {"AutoImageProcessor": "image_processing_chest.ChestImageProcessor"}
    assert saved["num_channels"] == 3 and saved["size"] == {"height": 48, "width": 40}
    assert (tmp_path / "image_processing_chest.py").exists()
    loaded = ChestImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == processor.to_dict()
    torch.testing.assert_close(
        loaded(images=xray, return_tensors="pt")["pixel_values"],
        processor(images=xray, return_tensors="pt")["pixel_values"],
    )


class _ProcessorTestConfig(PretrainedConfig):
    model_type = "hf_covid_processor_test"


def _ensure_registered() -> None:
    """Register like hf_covid/models/__init__.py does, unless it already has."""
    registered = any(
        ChestImageProcessor in mapping.values()
        for mapping in IMAGE_PROCESSOR_MAPPING._extra_content.values()
    )
    if not registered:
        AutoImageProcessor.register(
            _ProcessorTestConfig, image_processor_classes={"torchvision": ChestImageProcessor}
        )


def test_auto_image_processor_loads_a_chest_image_processor(tmp_path, xray):
    _ensure_registered()
    ChestImageProcessor(size=32).save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, ChestImageProcessor)
    assert loaded.backend == "torchvision"
    assert loaded(images=xray, return_tensors="pt")["pixel_values"].shape == (1, 1, 32, 32)


def test_saved_processor_loads_as_remote_code_without_hf_covid(tmp_path, xray):
    ChestImageProcessor(size=32).save_pretrained(tmp_path)
    remote_class = get_class_from_dynamic_module(
        "image_processing_chest.ChestImageProcessor", str(tmp_path)
    )
    assert remote_class is not ChestImageProcessor
    assert remote_class.__module__.startswith("transformers_modules")
    remote = remote_class.from_pretrained(tmp_path)
    torch.testing.assert_close(
        remote(images=xray, return_tensors="pt")["pixel_values"],
        ChestImageProcessor(size=32)(images=xray, return_tensors="pt")["pixel_values"],
    )


def test_processor_file_imports_only_what_remote_code_may_import():
    tree = ast.parse(Path(processing_module.__file__).read_text())
    allowed = {"__future__", "typing", "numpy", "torch", "torchvision", "PIL", "transformers"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {"." if node.level else node.module.split(".")[0]}
        else:
            continue
        assert roots <= allowed | {"."}, f"image_processing_chest.py imports {roots}"


def test_post_process_semantic_segmentation_thresholds_one_logit_and_resizes():
    logits = torch.full((2, 1, 8, 8), -4.0)
    logits[0, :, 2:6, 1:4] = 4.0  # a lung on the left of the first image
    maps = ChestImageProcessor().post_process_semantic_segmentation(
        {"logits": logits}, target_sizes=[(16, 16), (4, 6)]
    )
    assert [tuple(label_map.shape) for label_map in maps] == [(16, 16), (4, 6)]
    assert maps[0].dtype == torch.long and set(maps[0].unique().tolist()) == {0, 1}
    assert maps[0][4:12, 2:8].all() and not maps[0][:, 10:].any()
    assert not maps[1].any()
    strict = ChestImageProcessor(mask_threshold=0.99).post_process_semantic_segmentation(
        {"logits": logits}
    )
    assert not strict[0].any()  # sigmoid(4) = 0.982 < 0.99: the processor's threshold applies


def test_post_process_semantic_segmentation_takes_the_argmax_of_several_logits():
    logits = torch.zeros(1, 3, 4, 4)
    logits[0, 2, :2] = 1.0
    logits[0, 1, 2:] = 1.0
    (label_map,) = ChestImageProcessor().post_process_semantic_segmentation({"logits": logits})
    assert label_map[:2].eq(2).all() and label_map[2:].eq(1).all()
    with pytest.raises(ValueError, match="got 2 target sizes for a batch of 1"):
        ChestImageProcessor().post_process_semantic_segmentation(
            {"logits": logits}, target_sizes=[(4, 4), (4, 4)]
        )


def test_stock_processor_gives_the_same_three_channel_input_for_grayscale_images(xray):
    processor = ChestImageProcessor(
        size=32, num_channels=3, do_normalize=True, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
    )
    stock = processor.to_stock_image_processor()
    gray = Image.fromarray(np.round(xray * 255).astype(np.uint8))

    ours = processor(images=gray, return_tensors="pt")["pixel_values"]
    theirs = stock(images=gray, return_tensors="pt")["pixel_values"]

    assert type(stock).__name__ == "ViTImageProcessor" and theirs.shape == ours.shape
    # The stock processor rounds the resized pixels to 8 bits: one grey level at most.
    assert (theirs - ours).abs().max() <= 1.01 / 255 / min(IMAGENET_STD)
    back = ChestImageProcessor.from_stock_image_processor(stock)
    assert back.to_dict() == processor.to_dict()
    with pytest.raises(ValueError, match="only a 3-channel ChestImageProcessor"):
        ChestImageProcessor().to_stock_image_processor()
