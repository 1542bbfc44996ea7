"""The shortcut mitigations: lung crop and intensity standardisation in the processor, the
outside-the-lungs augmentation, group-balanced sampling, and crop checkpoints that carry their
U-Net into evaluation."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from chest_trees import write_radiography_tree
from datasets import concatenate_datasets
from PIL import Image
from test_public_data import write_collections
from torchvision.transforms.v2 import functional as tvF
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

from hf_covid.checkpoints import (
    LUNG_SEGMENTER_FOLDER,
    PROCESSOR_FILE,
    RUN_RECORD_FILE,
    load_checkpoint,
    save_model_and_processor,
)
from hf_covid.data import ChestAugmentation, build_radiography_dataset, preprocess_for_training
from hf_covid.evaluation import evaluate_checkpoint
from hf_covid.evaluation.inputs import prepare_inputs
from hf_covid.export import export_onnx
from hf_covid.model_card import write_model_card
from hf_covid.models.image_processing_chest import ChestImageProcessor, clahe, lung_crop_box
from hf_covid.models.pipeline_chest import (
    CHEST_CLASSIFICATION_TASK,
    ChestImageClassificationPipeline,
)
from hf_covid.registry import get_model_family
from hf_covid.serving import ChestPredictor
from hf_covid.serving.onnx_predictor import OnnxPredictor
from hf_covid.serving.overlays import heatmap_overlay
from hf_covid.training import ConfigurationError
from hf_covid.training.run import train_from_recipe
from hf_covid.training.trainer import BalancedClassSampler

SIZE = 32


def two_lungs(height: int = 300, width: int = 400) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[60:210, 100:180] = 255
    mask[60:210, 220:300] = 255
    return mask


def test_lung_crop_box_spans_both_lungs_with_the_margin():
    # Box 60-210 x 100-300 (150 x 200 pixels), widened by 10% of each side.
    (top, left, bottom, right), status = lung_crop_box(torch.from_numpy(two_lungs() > 0), 0.1)
    assert status == 0
    assert (top, bottom) == (60 - 15, 210 + 15)
    assert (left, right) == (100 - 20, 300 + 20)


def test_lung_crop_box_ignores_a_few_stray_pixels():
    mask = two_lungs() > 0
    mask[295, 5] = True  # one pixel far from the lungs
    (top, left, bottom, right), _ = lung_crop_box(torch.from_numpy(mask), 0.0)
    assert (top, left, bottom, right) == (60, 100, 210, 300)


def test_empty_or_whole_image_mask_leaves_the_image_uncropped():
    whole = (0, 0, 40, 50)
    assert lung_crop_box(torch.zeros(40, 50, dtype=torch.bool), 0.08) == (whole, 1)
    assert lung_crop_box(torch.ones(40, 50, dtype=torch.bool), 0.08) == (whole, 2)


def test_processor_crops_image_and_mask_to_the_lungs_and_reports_the_box():
    image = np.tile((np.arange(400) // 2).astype(np.uint8)[None, :], (300, 1))
    processor = ChestImageProcessor(size={"height": SIZE, "width": SIZE}, lung_crop_margin=0.0)
    output = processor(images=[image], masks=[two_lungs()], return_tensors="pt")
    assert output["lung_crop_status"].tolist() == [0]
    assert output["lung_crop_box"][0].tolist() == pytest.approx([0.2, 0.25, 0.7, 0.75])
    # The crop is columns 100-299 of a horizontal ramp: grey levels 50-149 only.
    pixels = output["pixel_values"][0, 0] * 255
    assert float(pixels.min()) >= 45 and float(pixels.max()) <= 155
    assert output["lung_mask"].shape == (1, 1, SIZE, SIZE)
    assert 0.0 < float(output["lung_mask"].mean()) < 1.0


def test_cropping_processor_without_masks_names_the_option():
    processor = ChestImageProcessor(lung_crop_margin=0.08, lung_crop_segmenter="lung_segmenter")
    with pytest.raises(ValueError, match="lung_crop_margin=0.08.*masks="):
        processor(images=[two_lungs()])


def test_processor_settings_survive_save_and_load(tmp_path):
    processor = ChestImageProcessor(
        lung_crop_margin=0.05,
        lung_crop_segmenter="lung_segmenter",
        intensity_standardization="clahe",
    )
    processor.save_pretrained(tmp_path)
    loaded = ChestImageProcessor.from_pretrained(tmp_path)
    assert (loaded.lung_crop_margin, loaded.lung_crop_segmenter) == (0.05, "lung_segmenter")
    assert loaded.intensity_standardization == "clahe"
    with pytest.raises(ValueError, match="intensity_standardization"):
        ChestImageProcessor(intensity_standardization="gamma")


def test_a_resnet_with_a_lung_crop_keeps_hf_covids_processor():
    family = get_model_family("resnet")
    plain = ChestImageProcessor(**family.processor_options)
    cropping = ChestImageProcessor(**family.processor_options, lung_crop_margin=0.08)
    assert type(family.checkpoint_image_processor(plain)).__name__ == "ViTImageProcessor"
    assert family.checkpoint_image_processor(cropping) is cropping


def test_clahe_with_one_tile_and_no_clipping_is_histogram_equalisation():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(40, 120, (64, 64)).astype(np.float32))[None]
    equalised = clahe(image, clip_limit=1e9, tiles=1)
    counts = torch.bincount(image.flatten().long(), minlength=256).double()
    expected = (counts.cumsum(0) * 255 / image.numel())[image.long()]
    assert torch.allclose(equalised, expected.float(), atol=1e-3)


def test_clahe_spreads_a_low_contrast_image_and_keeps_the_order_within_a_tile():
    rng = np.random.default_rng(1)
    image = torch.from_numpy(rng.normal(100, 5, (96, 96)).clip(0, 255).astype(np.float32))[None]
    result = clahe(image, clip_limit=2.0, tiles=1)
    # Spread, but less than unclipped equalisation: the clip limit caps the stretch.
    unclipped = clahe(image, clip_limit=1e9, tiles=1)
    assert 2 * float(image.std()) < float(result.std()) < float(unclipped.std())
    order = image.flatten().round().argsort()
    assert bool((result.flatten()[order].diff() >= -1e-4).all())


def test_equalize_and_clahe_are_the_processors_standardisation():
    image = (np.random.default_rng(2).random((40, 40)) * 80 + 60).astype(np.uint8)
    for method in ("equalize", "clahe"):
        processor = ChestImageProcessor(
            size={"height": 40, "width": 40}, do_rescale=False, intensity_standardization=method
        )
        pixels = processor(images=[image], return_tensors="pt")["pixel_values"][0]
        tensor = torch.from_numpy(image).float()[None]
        reference = (
            tvF.equalize(tensor.to(torch.uint8)).float() if method == "equalize" else clahe(tensor)
        )
        assert torch.allclose(pixels, reference, atol=0.5)


def test_training_cache_holds_the_cropped_image_the_processor_makes(tmp_path):
    root = write_radiography_tree(tmp_path / "data", images_per_class=6, size=48)
    lungs = np.zeros((48, 48), np.uint8)
    lungs[10:30, 8:40] = 255
    for mask_file in root.glob("*/masks/*.png"):
        Image.fromarray(lungs).save(mask_file)
    raw = build_radiography_dataset(root, classes=["COVID", "Normal"], cache_dir=tmp_path / "c")
    processor = ChestImageProcessor(size={"height": SIZE, "width": SIZE}, lung_crop_margin=0.0)
    prepared = preprocess_for_training(
        raw, image_size=SIZE, processor=processor, cache_dir=tmp_path / "c"
    )
    row = raw["test"][0]
    expected = processor.resize_steps()(
        images=[np.asarray(row["image"])], masks=[np.asarray(row["mask"])], return_tensors="pt"
    )
    cached = prepared["test"][0]
    assert int(cached["lung_crop_status"]) == 0
    assert int(cached["lung_crop_status"]) == int(expected["lung_crop_status"][0])
    assert torch.equal(cached["pixel_values"], expected["pixel_values"][0].round().to(torch.uint8))
    plain = preprocess_for_training(raw, image_size=SIZE, cache_dir=tmp_path / "c")
    assert not torch.equal(plain["test"][0]["pixel_values"], cached["pixel_values"])
    with pytest.raises(ValueError, match="lung crop needs a lung mask"):
        preprocess_for_training(raw, image_size=SIZE, processor=processor, mask_column=None)


def test_outside_the_lungs_swap_takes_another_images_outside_and_keeps_the_lungs():
    quiet = {"rotation_degrees": 0, "scale": (1, 1), "translate": 0, "brightness": 0}
    quiet |= {"contrast": 0, "noise_std": 0, "outside_lungs_dilation": 0}
    images = torch.stack([torch.full((1, 16, 16), value) for value in (0.2, 0.8)])
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:12, 4:12] = 1
    torch.manual_seed(3)
    swap = ChestAugmentation(**quiet, outside_lungs_probability=1.0, outside_lungs_fill="swap")
    out, _ = swap.augment_batch(images, mask)
    assert torch.equal(out[:, :, 4:12, 4:12], images[:, :, 4:12, 4:12])
    outside = out[:, 0][mask[:, 0] == 0].view(2, -1)
    assert {round(float(v), 3) for v in outside.unique()} <= {0.2, 0.8}
    blank = ChestAugmentation(**quiet, outside_lungs_probability=1.0, outside_lungs_fill="blank")
    out, _ = blank.augment_batch(images, mask)
    assert float(out[:, 0][mask[:, 0] == 0].abs().max()) == 0.0
    with pytest.raises(ValueError, match="needs the lung mask"):
        blank.augment_batch(images)


def test_group_balanced_sampler_draws_classes_and_groups_within_a_class_equally():
    labels = np.array([0] * 90 + [0] * 10 + [1] * 50)
    groups = ["a"] * 90 + ["b"] * 10 + ["a"] * 50
    sampler = BalancedClassSampler(labels, seed=0, groups=groups)
    drawn = Counter()
    for epoch in range(20):
        sampler.set_epoch(epoch)
        drawn.update((labels[i], groups[i]) for i in sampler)
    total = sum(drawn.values())
    assert drawn[(0, "a")] / total == pytest.approx(0.25, abs=0.02)
    assert drawn[(0, "b")] / total == pytest.approx(0.25, abs=0.02)
    assert drawn[(1, "a")] / total == pytest.approx(0.5, abs=0.02)


@pytest.fixture(scope="module")
def collections_root(tmp_path_factory) -> Path:
    return write_collections(tmp_path_factory.mktemp("collections"))


def constant_unet(folder: Path, logit: float) -> Path:
    """A tiny lung U-Net whose mask is the whole image (logit > 0) or empty (logit < 0)."""
    model = get_model_family("lung_unet").tiny_model()
    with torch.no_grad():
        model.segmentation_head.weight.zero_()
        model.segmentation_head.bias.fill_(logit)
    model.save_pretrained(folder)
    ChestImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(folder)
    return folder


def _train_cropped(collections_root: Path, unet: Path, output_dir: Path, cache: Path, **extra):
    return train_from_recipe(
        "cnn_lstm_public",
        {
            "data_dir": str(collections_root),
            "output_dir": str(output_dir),
            "cache_dir": str(cache),
            "config_overrides": dict(get_model_family("cnn_lstm").tiny_config),
            "image_size": SIZE,
            "num_train_epochs": 1,
            "per_device_train_batch_size": 8,
            "disable_tqdm": True,
            "early_stopping_patience": 0,
            "mask_model": str(unet),
            "lung_crop_margin": 0.08,
            "intensity_standardization": "equalize",
        }
        | extra,
    )


@pytest.mark.slow
def test_crop_checkpoint_carries_its_unet_and_counts_images_it_could_not_crop(
    collections_root, tmp_path
):
    unet = constant_unet(tmp_path / "unet", logit=10.0)  # every mask covers the whole image
    output_dir = tmp_path / "cnn_lstm"
    results = _train_cropped(collections_root, unet, output_dir, tmp_path / "cache")
    crop = results["dataset"]["lung_crop"]
    assert crop["segmenter"] == "unet" and crop["margin"] == 0.08
    assert crop["uncropped"]["test"] == {"mask covers the image": crop["images"]["test"]}
    assert (output_dir / LUNG_SEGMENTER_FOLDER / "model.safetensors").is_file()
    saved = json.loads((output_dir / PROCESSOR_FILE).read_text())
    assert saved["lung_crop_margin"] == 0.08
    assert saved["lung_crop_segmenter"] == LUNG_SEGMENTER_FOLDER
    assert saved["intensity_standardization"] == "equalize"
    record = json.loads((output_dir / RUN_RECORD_FILE).read_text())
    assert record["data"]["mask_model"] == "unet"  # never the local path

    evaluated = evaluate_checkpoint(output_dir, data_dir=collections_root, figures=False)
    assert evaluated["metrics"]["accuracy"] == pytest.approx(results["metrics"]["accuracy"])
    # Training's test results say what an evaluation says: the masks, per source, per age group.
    assert (
        results["masks"]
        == evaluated["masks"]
        == "the checkpoint's lung U-Net (lung_segmenter/), for every image"
    )
    for breakdown in ("per_source", "per_age_group"):
        assert results[breakdown] is not None
        assert results[breakdown].keys() == evaluated[breakdown].keys()
        total = sum(group["n_samples"] for group in results[breakdown].values())
        assert total == crop["images"]["test"]
    # Without its U-Net the checkpoint cannot crop: it says what is missing.
    shutil.rmtree(output_dir / LUNG_SEGMENTER_FOLDER)
    with pytest.raises(FileNotFoundError, match="lung_segmenter/ folder"):
        evaluate_checkpoint(output_dir, data_dir=collections_root, figures=False)


def test_lung_crop_needs_mask_model_and_an_xray_model(collections_root, tmp_path):
    with pytest.raises(ConfigurationError, match="lung crop needs mask_model"):
        _train_cropped(
            collections_root, tmp_path / "unet", tmp_path / "out", tmp_path / "c", mask_model=None
        )


def test_dual_channel_evaluated_without_masks_or_unet_is_refused(tmp_path):
    root = write_radiography_tree(tmp_path / "data", images_per_class=6, without_mask=2)
    raw = build_radiography_dataset(root, classes=["COVID", "Normal"], cache_dir=tmp_path / "c")
    every_row = concatenate_datasets(list(raw.values()))
    folder = tmp_path / "dual_channel"
    get_model_family("dual_channel").tiny_model(["COVID", "Normal"]).save_pretrained(folder)
    ChestImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(folder)
    model, processor = load_checkpoint(folder)
    with pytest.raises(ValueError, match="needs a lung mask for every image, but 4 of 12"):
        prepare_inputs(model, processor, every_row)
    unet = constant_unet(tmp_path / "unet", logit=10.0)
    _, _, settings = prepare_inputs(model, processor, every_row, mask_model=str(unet))
    assert settings["masks"] == "lung U-Net unet, for every image"
    _, _, settings = prepare_inputs(
        model, processor, every_row.filter(lambda row: row["mask"] is not None)
    )
    assert settings["masks"] == "the dataset's own masks"


@pytest.fixture(scope="module")
def crop_checkpoint(tmp_path_factory) -> Path:
    """A tiny CNN+LSTM whose processor crops to the lungs and standardises, with its own U-Net
    (one whose mask is the whole image) in lung_segmenter/."""
    folder = tmp_path_factory.mktemp("crop_checkpoint")
    unet = constant_unet(tmp_path_factory.mktemp("unet"), logit=10.0)
    unet_model, unet_processor = load_checkpoint(unet)
    processor = ChestImageProcessor(
        size={"height": SIZE, "width": SIZE},
        lung_crop_margin=0.0,
        lung_crop_segmenter=LUNG_SEGMENTER_FOLDER,
        intensity_standardization="clahe",
    )
    model = get_model_family("cnn_lstm").tiny_model(["COVID", "Normal"])
    save_model_and_processor(model, processor, folder, lung_segmenter=(unet_model, unet_processor))
    return folder


def test_a_cropping_resnets_card_shows_the_transformers_code_that_runs(tmp_path):
    family = get_model_family("resnet")
    unet_model, unet_processor = load_checkpoint(constant_unet(tmp_path / "unet", logit=10.0))
    processor = ChestImageProcessor(
        **family.processor_options | {"size": {"height": SIZE, "width": SIZE}},
        lung_crop_margin=0.08,
        lung_crop_segmenter=LUNG_SEGMENTER_FOLDER,
    )
    folder = tmp_path / "resnet"
    model = family.tiny_model(["COVID", "Normal"])
    save_model_and_processor(model, processor, folder, lung_segmenter=(unet_model, unet_processor))
    card = write_model_card(folder).read_text()
    # The ResNet is stock transformers, its cropping processor is not: the card says so.
    assert "processor = AutoImageProcessor.from_pretrained(repo_id, trust_remote_code=True)" in card
    assert "model = AutoModelForImageClassification.from_pretrained(repo_id).eval()" in card
    assert 'masks=Image.open("lung_mask.png")' in card and "lung_segmenter/" in card

    # What the card says runs: the processor from the folder's own code, with a mask.
    loaded = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    image = Image.fromarray((np.random.default_rng(3).random((300, 400)) * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="pass masks="):
        loaded(image, return_tensors="pt")
    inputs = loaded(image, masks=Image.fromarray(two_lungs()), return_tensors="pt")
    classifier = AutoModelForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        assert classifier(**inputs).logits.shape == (1, 2)


def test_predictor_crops_with_an_uploaded_mask_and_places_the_map_in_the_box(crop_checkpoint):
    predictor = ChestPredictor.from_pretrained(crop_checkpoint)
    image = (np.random.default_rng(5).random((300, 400)) * 255).astype(np.uint8)
    prediction = predictor.predict(xray=image, lung_mask=two_lungs())
    assert prediction.lung_crop_status == "cropped"
    assert prediction.lung_crop_box == pytest.approx((0.2, 0.25, 0.7, 0.75))
    cam = prediction.gradcam["xray"]
    assert cam.shape == (300, 400)
    outside = np.ones_like(cam, dtype=bool)
    outside[60:210, 100:300] = False
    assert float(np.abs(cam[outside]).max()) == 0.0
    inputs = predictor.image_processor(images=[image], masks=[two_lungs()], return_tensors="pt")
    with torch.no_grad():
        expected = predictor.model(pixel_values=inputs["pixel_values"]).logits.softmax(-1)[0]
    assert list(prediction.probabilities.values()) == pytest.approx(expected.tolist(), abs=1e-6)


def test_predictor_makes_the_crop_mask_with_the_checkpoints_own_unet(crop_checkpoint):
    prediction = ChestPredictor.from_pretrained(crop_checkpoint).predict(
        xray=(np.random.default_rng(6).random((64, 64)) * 255).astype(np.uint8)
    )
    assert prediction.mask_source == "lung_unet"
    # That U-Net's mask covers the whole image: used uncropped, and said so.
    assert prediction.lung_crop_status == "mask covers the image"
    assert prediction.lung_crop_box == (0.0, 0.0, 1.0, 1.0)


def test_pipeline_crops_as_the_predictor_does(crop_checkpoint):
    image = (np.random.default_rng(7).random((300, 400)) * 255).astype(np.uint8)
    classifier = pipeline(
        CHEST_CLASSIFICATION_TASK,
        model=str(crop_checkpoint),
        pipeline_class=ChestImageClassificationPipeline,
        trust_remote_code=False,
    )
    answer = classifier(image, masks=two_lungs(), return_lung_crop=True)
    assert answer["lung_crop_status"] == "cropped"
    assert answer["lung_crop_box"] == pytest.approx([0.2, 0.25, 0.7, 0.75])
    served = ChestPredictor.from_pretrained(crop_checkpoint).predict(
        xray=image, lung_mask=two_lungs(), explain=False
    )
    scores = {row["label"]: row["score"] for row in answer["scores"]}
    assert scores == pytest.approx(served.probabilities, abs=1e-6)
    # Without a mask, the checkpoint's own U-Net makes it.
    assert classifier(image, return_lung_crop=True)["lung_crop_status"] == "mask covers the image"


@pytest.mark.slow
def test_onnx_export_carries_the_unet_and_predicts_as_pytorch(crop_checkpoint, tmp_path):
    exported = export_onnx(crop_checkpoint, tmp_path / "onnx")
    assert (exported.parent / LUNG_SEGMENTER_FOLDER / "model.onnx").is_file()
    image = (np.random.default_rng(8).random((80, 96)) * 255).astype(np.uint8)
    onnx_probabilities, box = OnnxPredictor(exported.parent).predict_with_crop(image)
    served = ChestPredictor.from_pretrained(crop_checkpoint).predict(xray=image, explain=False)
    assert box == served.lung_crop_box
    assert onnx_probabilities == pytest.approx(served.probabilities, abs=1e-4)
    shutil.rmtree(exported.parent / LUNG_SEGMENTER_FOLDER)
    with pytest.raises(FileNotFoundError, match="lung_segmenter/model.onnx is missing"):
        OnnxPredictor(exported.parent)


def test_heatmap_overlay_outlines_the_crop_box():
    image = np.zeros((100, 100), np.float32)
    plain = heatmap_overlay(image, np.zeros_like(image), side=100)
    boxed = heatmap_overlay(image, np.zeros_like(image), side=100, box=(0.2, 0.3, 0.8, 0.7))
    changed = np.any(boxed != plain, axis=-1)
    assert changed[20, 30:70].all() and changed[20:80, 30].all()
    assert not changed[50, 50] and not changed[5, 5]
