"""hf_covid.serving: predictors, input reading, overlays and served models on tiny random
checkpoints."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from app_support import PATIENT_ID, PATIENT_NAME, build_tiny_checkpoints, write_test_images
from PIL import Image

from hf_covid.checkpoints import CheckpointSource, resolve_checkpoint
from hf_covid.data import ImageReadError, InputError, load_image
from hf_covid.data.validation import DEFAULT_INPUT_POLICY
from hf_covid.lung_masks import LungSegmenter
from hf_covid.models.labels import BINARY_LABELS, RADIOGRAPHY_LABELS
from hf_covid.serving import ChestPredictor, load_predictor
from hf_covid.serving.overlays import feature_map_grid, heatmap_overlay, mask_overlay
from hf_covid.serving.served import load_served_models, read_model_card, read_provenance


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return build_tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_test_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def served(checkpoints):
    return load_served_models(checkpoints, policy=DEFAULT_INPUT_POLICY.with_max_pixels(1_000_000))


def test_predict_xray_gives_probabilities_by_class_name_and_explanations(served, images):
    prediction = served.classifiers["cnn_lstm"].predict(xray=images["xray"])

    assert list(prediction.probabilities) == list(RADIOGRAPHY_LABELS)
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert prediction.label in RADIOGRAPHY_LABELS
    assert prediction.inputs_used == ("xray",)
    assert prediction.images["xray"].shape == (48, 48)
    cam = prediction.gradcam["xray"]
    assert cam.shape == (48, 48) and cam.min() >= 0 and cam.max() <= 1
    assert prediction.feature_maps["xray"].ndim == 3
    # The lung U-Net is attached, so even an X-ray-only model reports the lung mask.
    assert prediction.mask_source == "lung_unet"
    assert prediction.lung_mask.shape == (48, 48) and prediction.lung_mask.dtype == bool


def test_explanation_method_and_stage_are_configurable(checkpoints, images):
    default = load_served_models(checkpoints).classifiers["dual_input"]
    staged = load_served_models(
        checkpoints, explanation="hirescam", explanation_stage=0
    ).classifiers["dual_input"]
    assert staged._gradcam.target_layers == {
        "xray": "dual_input.xray_encoder.blocks.0",
        "ct": "dual_input.ct_encoder.blocks.0",
    }
    first, second = (p.predict(xray=images["xray"], ct=images["ct"]) for p in (default, staged))
    assert first.probabilities == second.probabilities
    for name in ("xray", "ct"):
        assert second.gradcam[name].shape == first.gradcam[name].shape
        assert not np.allclose(second.gradcam[name], first.gradcam[name])
        # Stage 0 keeps more resolution than the last block.
        assert second.feature_maps[name].shape[-1] > first.feature_maps[name].shape[-1]
    with pytest.raises(ValueError, match="explanation stage 7 does not exist"):
        ChestPredictor(default.model, default.image_processor, explanation_stage=7)
    with pytest.raises(ValueError, match="unknown CAM method 'lime'"):
        ChestPredictor(default.model, default.image_processor, explanation="lime")


def test_resnet_predictor_takes_grayscale_xray(served, images):
    prediction = served.classifiers["resnet"].predict(xray=images["xray_16bit"])

    assert list(prediction.probabilities) == list(RADIOGRAPHY_LABELS)
    assert prediction.gradcam["xray"].shape == (48, 48)


def test_dual_input_accepts_ct_only(served, images):
    prediction = served.classifiers["dual_input"].predict(ct=images["ct"])

    assert list(prediction.probabilities) == list(BINARY_LABELS)
    assert prediction.inputs_used == ("ct",)
    assert set(prediction.gradcam) == {"ct"}
    assert prediction.gradcam["ct"].shape == (40, 56)
    assert prediction.lung_mask is None


def test_dual_input_uses_both_images(served, images):
    prediction = served.classifiers["dual_input"].predict(xray=images["xray"], ct=images["ct"])

    assert prediction.inputs_used == ("xray", "ct")
    assert set(prediction.gradcam) == {"xray", "ct"}
    assert set(prediction.feature_maps) == {"xray", "ct"}


def test_dual_input_without_images_raises(served):
    with pytest.raises(InputError, match="no image given"):
        served.classifiers["dual_input"].predict()


def test_path_bytes_pil_and_arrays_give_the_same_prediction(served, images):
    predictor = served.classifiers["cnn_lstm"]
    path = images["xray"]
    pixels = np.asarray(Image.open(path))
    sources = [path, str(path), path.read_bytes(), Image.open(path), pixels, pixels / 255.0]

    results = [predictor.predict(xray=source, explain=False) for source in sources]

    for result in results[1:]:
        assert result.probabilities == pytest.approx(results[0].probabilities, abs=1e-5)


def test_dual_channel_uses_lung_unet_mask_when_none_is_given(served, images):
    prediction = served.classifiers["dual_channel"].predict(xray=images["xray"])

    assert prediction.mask_source == "lung_unet"
    assert prediction.lung_mask.shape == (48, 48)


def test_uploaded_mask_with_the_xray_aspect_ratio_is_resized(served, images):
    prediction = served.classifiers["dual_channel"].predict(
        xray=images["xray"], lung_mask=images["mask"]
    )

    assert prediction.mask_source == "uploaded"
    assert prediction.lung_mask.shape == (48, 48)
    expected = np.asarray(Image.open(images["mask"]).resize((48, 48), Image.NEAREST)) > 127
    assert (prediction.lung_mask == expected).mean() > 0.95


def test_mask_of_another_shape_is_rejected(served, images):
    with pytest.raises(InputError, match="lung mask does not fit the X-ray: mask is 16x48"):
        served.classifiers["dual_channel"].predict(
            xray=images["xray"], lung_mask=images["mask_wrong_shape"]
        )


def test_dual_channel_without_mask_or_segmenter_says_a_mask_is_needed(checkpoints, images):
    predictor = ChestPredictor.from_pretrained(checkpoints["dual_channel"])

    with pytest.raises(InputError, match="needs a lung mask"):
        predictor.predict(xray=images["xray"])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("corrupt", "cannot read the X-ray: truncated or corrupt PNG"),
        ("not_an_image", "cannot read the X-ray: not a recognised image"),
        ("huge", "X-ray.*1200x1000.*more than max_pixels=1,000,000"),
    ],
)
def test_bad_image_raises_input_error_that_does_not_name_the_file(served, images, name, message):
    with pytest.raises(InputError, match=message) as error:
        served.classifiers["cnn_lstm"].predict(xray=images[name])

    assert str(images[name].parent) not in str(error.value)
    assert images[name].stem not in str(error.value)


def test_a_named_float_array_outside_unit_range_is_refused_by_its_name():
    with pytest.raises(ImageReadError, match=r"the CT: a float array must hold finite values"):
        load_image(np.full((16, 16), 2.0), name="CT")


def test_dicom_prediction_holds_pixels_but_no_patient_data(served, images):
    prediction = served.classifiers["cnn_lstm"].predict(xray=images["dicom"])

    reference = served.classifiers["cnn_lstm"].predict(xray=images["xray"])
    assert prediction.probabilities == pytest.approx(reference.probabilities, abs=0.02)
    text = repr(prediction.__dict__.keys()) + repr(prediction.probabilities)
    assert PATIENT_NAME not in text and PATIENT_ID not in text
    assert all(isinstance(value, np.ndarray) for value in prediction.images.values())


def test_load_predictor_picks_the_predictor_by_model_type(checkpoints):
    assert isinstance(load_predictor(checkpoints["lung_unet"]), LungSegmenter)
    predictor = load_predictor(checkpoints["dual_input"])
    assert isinstance(predictor, ChestPredictor)
    assert predictor.input_names == ("xray", "ct")


def test_one_resolver_takes_a_folder_a_source_or_a_hub_id_at_a_revision(checkpoints):
    folder = checkpoints["cnn_lstm"]
    assert resolve_checkpoint(CheckpointSource(str(folder))) == resolve_checkpoint(folder)
    assert isinstance(load_predictor(CheckpointSource(str(folder))), ChestPredictor)
    with pytest.raises(FileNotFoundError, match="'org/cnn-lstm@3f2a9c' from the Hub"):
        resolve_checkpoint("org/cnn-lstm@3f2a9c")  # offline in the tests: a download fails
    with pytest.raises(FileNotFoundError, match="'org/cnn-lstm@main' from the Hub"):
        resolve_checkpoint("org/cnn-lstm", revision="main")
    with pytest.raises(ValueError, match="given with another revision, 'main'"):
        resolve_checkpoint(CheckpointSource("org/cnn-lstm", "3f2a9c"), revision="main")


def test_missing_and_mismatched_checkpoints_are_reported_not_raised(checkpoints, tmp_path):
    served = load_served_models(
        {
            "cnn_lstm": checkpoints["cnn_lstm"],
            "resnet": str(tmp_path / "nowhere"),
            "dual_channel": checkpoints["resnet"],
        }
    )

    assert list(served.classifiers) == ["cnn_lstm"]
    assert served.lung_segmenter is None
    assert "no checkpoint folder at" in served.unavailable["resnet"]
    assert "expected a covid_dual_channel checkpoint" in served.unavailable["dual_channel"]
    assert served.unavailable["lung_unet"] == "no checkpoint configured"
    assert served.model_cards["cnn_lstm"].startswith("# Tiny cnn_lstm")


def test_no_loadable_classifier_is_a_clear_error(checkpoints, tmp_path):
    with pytest.raises(RuntimeError, match="no classifier checkpoint could be loaded.*cnn_lstm"):
        load_served_models(
            {"cnn_lstm": str(tmp_path / "missing"), "lung_unet": checkpoints["lung_unet"]}
        )


def test_model_card_is_read_without_its_yaml_header(checkpoints, tmp_path):
    assert read_model_card(checkpoints["resnet"]) == "# Tiny resnet\n\nModel card of resnet."
    assert read_model_card(tmp_path) is None


def test_concurrent_predictions_match_sequential_ones(served, images):
    predictor = served.classifiers["dual_input"]
    requests = [
        {"xray": images["xray"]},
        {"ct": images["ct"]},
        {"xray": images["xray"], "ct": images["ct"]},
    ] * 3
    sequential = [predictor.predict(**request) for request in requests]

    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda request: predictor.predict(**request), requests))

    for expected, result in zip(sequential, concurrent, strict=True):
        assert result.probabilities == pytest.approx(expected.probabilities, abs=1e-6)
        assert result.gradcam.keys() == expected.gradcam.keys()
        for name in expected.gradcam:
            np.testing.assert_allclose(result.gradcam[name], expected.gradcam[name], atol=1e-5)


def test_overlays_are_rgb_and_fit_the_display_size():
    image = np.linspace(0, 1, 600 * 900, dtype=np.float32).reshape(600, 900)
    heat = np.zeros((20, 30), dtype=np.float32)
    heat[10, 15] = 1

    overlay = heatmap_overlay(image, heat, side=300)
    mask = mask_overlay(image, image > 0.5, side=300)

    assert overlay.shape == (200, 300, 3) and overlay.dtype == np.uint8
    assert mask.shape == (200, 300, 3)
    assert (mask[150, 250] != mask[50, 50]).any()  # the lung side is tinted
    assert heatmap_overlay(image[:60, :90], heat, side=300).shape == (200, 300, 3)  # grows


def test_feature_map_grid_puts_channels_side_by_side():
    grid = feature_map_grid(np.random.rand(6, 4, 4), columns=4, tile_size=16, gap=2)

    assert grid.shape == (2 * 18 - 2, 4 * 18 - 2, 3) and grid.dtype == np.uint8
    assert (grid[:, 16:18] == 255).all()  # the gap between the first two columns


def test_every_input_is_scored_by_the_input_check(served, images):
    prediction = served.classifiers["dual_input"].predict(xray=images["xray"], ct=images["ct"])

    assert set(prediction.input_checks) == {"xray", "ct"}
    assert prediction.input_checks["xray"].slot == "xray"
    assert prediction.input_checks["ct"].slot == "ct"
    assert all(0 <= check.score <= 1 for check in prediction.input_checks.values())


def test_float_array_outside_the_policy_is_an_input_error():
    with pytest.raises(InputError, match="the CT: the image is 4x4 pixels; need at least 8x8"):
        load_image(np.zeros((4, 4)), name="CT")


def test_provenance_of_a_checkpoint_without_records_is_unknown(checkpoints, tmp_path):
    provenance = read_provenance(checkpoints["cnn_lstm"])
    assert provenance.training_data == "unknown" and not provenance.synthetic
    assert provenance.metrics == {} and provenance.evaluation is None
    (tmp_path / "training_config.json").write_text("[not a record")
    assert read_provenance(tmp_path).training_data == "unknown"  # broken: unknown, no error
