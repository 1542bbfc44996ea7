"""The input check: features, the packaged parameters, verdicts, fitting and evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from hf_covid.data.input_check import (
    DEFAULT_PARAMS_PATH,
    FEATURE_NAMES,
    IMAGE_KINDS,
    REASONS,
    InputCheck,
    InputCheckParams,
    measure_image,
)
from hf_covid.data.input_check_fitting import evaluate_input_check, fit_input_check
from hf_covid.data.input_check_references import (
    GENERATORS,
    HELD_OUT_FRACTION,
    generated_samples,
    is_held_out,
    phantom_samples,
)
from hf_covid.data.synthetic import GROUND_GLASS, PhantomPatient, render_ct, render_xray


def _phantom_xray(seed: int, size: int = 160) -> np.ndarray:
    rng = np.random.default_rng(seed)
    patient = PhantomPatient.sample(rng, GROUND_GLASS)
    return render_xray(patient, height=size, width=size, rng=rng).image / 255.0


def _phantom_ct(seed: int, size: int = 160) -> np.ndarray:
    rng = np.random.default_rng(seed)
    patient = PhantomPatient.sample(rng, None)
    return render_ct(patient, height=size, width=size, rng=rng).image / 255.0


def _colour_photo(seed: int, size: int = 120) -> np.ndarray:
    """Smooth random colour blobs: a stand-in for a photograph."""
    rng = np.random.default_rng(seed)
    channels = [ndimage.gaussian_filter(rng.random((size, size)), 6) for _ in range(3)]
    return np.stack([(c - c.min()) / np.ptp(c) for c in channels], axis=-1).astype(np.float32)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    rows, columns = np.mgrid[0:size, 0:size]
    return rows / size - 0.5, columns / size - 0.5


def _xray_like(seed: int, size: int = 96) -> np.ndarray:
    """A bright thorax with two dark, mirrored lung fields."""
    rng = np.random.default_rng(seed)
    y, x = _grid(size)
    body = (np.abs(x) < 0.42).astype(float) * 0.8
    lungs = sum(((x - side * 0.18) / 0.13) ** 2 + (y / 0.3) ** 2 < 1 for side in (-1, 1))
    image = body - 0.55 * lungs + rng.normal(0, 0.03, (size, size))
    return np.clip(image, 0, 1)


def _lateral_like(seed: int, size: int = 96) -> np.ndarray:
    """One big off-centre lung field, no mirror symmetry."""
    rng = np.random.default_rng(seed)
    y, x = _grid(size)
    image = 0.75 - 0.5 * ((((x - 0.12) / 0.25) ** 2 + (y / 0.32) ** 2) < 1)
    image[:, : size // 5] = 0.2
    return np.clip(image + rng.normal(0, 0.03, (size, size)), 0, 1)


def _ct_like(seed: int, size: int = 96) -> np.ndarray:
    """A round body on black, with two dark lungs inside."""
    rng = np.random.default_rng(seed)
    y, x = _grid(size)
    body = (x / 0.45) ** 2 + (y / 0.33) ** 2 < 1
    lungs = sum(((x - side * 0.17) / 0.14) ** 2 + (y / 0.22) ** 2 < 1 for side in (-1, 1))
    image = 0.7 * body - 0.55 * lungs + rng.normal(0, 0.02, (size, size))
    return np.clip(image, 0, 1)


def _noise(seed: int, size: int = 96) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size), dtype=np.float32)


_MAKERS = {
    "frontal_xray": _xray_like,
    "lateral_xray": _lateral_like,
    "ct_slice": _ct_like,
    "phantom_xray": _phantom_xray,
    "phantom_ct": _phantom_ct,
    "non_medical": _noise,
}


@pytest.fixture(scope="module")
def toy_check() -> InputCheck:
    """A check fitted on 12 generated images of each kind (seeds 0-11)."""
    features, kinds = [], []
    for kind, make in _MAKERS.items():
        for seed in range(12):
            features.append(measure_image(make(seed)))
            kinds.append(kind)
    return InputCheck(fit_input_check(features, kinds))


def test_measure_image_returns_one_value_per_feature_name():
    features = measure_image(_xray_like(0))
    assert features.values.shape == (len(FEATURE_NAMES),)
    assert np.isfinite(features.values).all()
    assert features.colour_fraction == 0.0


def test_measure_image_counts_colour_but_not_a_tint():
    grey = _xray_like(1)
    sepia = np.stack([grey, 0.85 * grey, 0.65 * grey], axis=-1)
    assert measure_image(sepia).colour_fraction < 0.01
    assert measure_image(_colour_photo(0)).colour_fraction > 0.3


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 4, 4, 4)), "shape"),
        (np.zeros((5, 100)), "at least 8x8"),
        (np.full((32, 32), 2.0), r"\[0, 1\]"),
        (np.full((32, 32), np.nan), "finite"),
    ],
)
def test_measure_image_rejects_bad_arrays(array, message):
    with pytest.raises(ValueError, match=message):
        measure_image(array)


def test_packaged_params_load_and_match_the_features():
    check = InputCheck.load()
    assert check.params.feature_names == list(FEATURE_NAMES)
    assert check.params.kinds == list(IMAGE_KINDS)
    assert np.asarray(check.params.weights).shape == (len(IMAGE_KINDS), len(FEATURE_NAMES))
    assert all(count > 0 for count in check.params.fitted_on.values())


@pytest.mark.parametrize("slot", ["xray", "ct"])
def test_packaged_check_flags_phantoms_as_phantoms(slot):
    check = InputCheck.load()
    for image in (_phantom_xray(101, size=299), _phantom_ct(102, size=256)):
        result = check.score(image, slot=slot)
        assert not result.looks_right
        assert result.reason_code == "phantom"
        assert "synthetic phantom" in result.reason


def test_packaged_check_flags_a_colour_photo_as_colour_image():
    result = InputCheck.load().score(_colour_photo(3, size=400), slot="xray")
    assert (result.looks_right, result.reason_code, result.score) == (False, "colour_image", 0.0)
    assert result.reason == REASONS["xray"]["colour_image"]


@pytest.mark.parametrize("slot", ["xray", "ct"])
def test_packaged_check_flags_noise_as_non_medical(slot):
    result = InputCheck.load().score(_noise(5, size=300), slot=slot)
    assert (result.looks_right, result.reason_code) == (False, "non_medical")


def test_result_probabilities_are_a_distribution_and_score_is_the_slot_kind():
    result = InputCheck.load().score(_xray_like(2, size=200), slot="ct")
    assert sum(result.probabilities.values()) == pytest.approx(1.0)
    assert result.score == pytest.approx(result.probabilities["ct_slice"])
    assert 0.0 <= result.score <= 1.0
    assert json.loads(json.dumps(result.to_dict()))["slot"] == "ct"


def test_score_rejects_an_unknown_slot():
    with pytest.raises(ValueError, match="slot must be one of"):
        InputCheck.load().score(_xray_like(0), slot="mri")


def test_fitted_check_accepts_each_slot_kind_and_names_the_others(toy_check):
    # Held-out seeds (100+) of the generated kinds.
    assert toy_check.score(_xray_like(100), slot="xray").reason_code == "ok"
    assert toy_check.score(_ct_like(100), slot="ct").reason_code == "ok"
    assert toy_check.score(_ct_like(101), slot="xray").reason_code == "ct_slice"
    assert toy_check.score(_xray_like(101), slot="ct").reason_code == "xray"
    assert toy_check.score(_lateral_like(100), slot="xray").reason_code == "lateral_view"
    assert toy_check.score(_phantom_xray(100), slot="xray").reason_code == "phantom"
    assert toy_check.score(_noise(100), slot="ct").reason_code == "non_medical"


def test_fitted_check_calls_a_far_away_image_unfamiliar(toy_check):
    # Most like an X-ray (mirrored dark fields in a bright body) but with a huge aspect ratio.
    wide = np.tile(_xray_like(102, size=64), (1, 4))
    result = toy_check.score(wide, slot="xray")
    assert result.distance > toy_check.params.references["xray"].distance_threshold
    assert result.reason_code != "ok" and not result.looks_right


def test_evaluate_input_check_reports_pass_rates_per_group(toy_check):
    features = [measure_image(_xray_like(seed)) for seed in range(200, 205)]
    features += [measure_image(_ct_like(seed)) for seed in range(200, 203)]
    groups = ["x-ray"] * 5 + ["ct"] * 3
    report = evaluate_input_check(toy_check, features, "xray", groups)
    assert report["x-ray"]["images"] == 5 and report["x-ray"]["passed"] == 1.0
    assert report["ct"] == {"images": 3, "passed": 0.0, "reasons": {"ct_slice": 3}}


def test_params_round_trip_through_json(toy_check, tmp_path):
    path = tmp_path / "params.json"
    toy_check.params.save(path)
    loaded = InputCheck.load(path)
    image = _ct_like(300)
    expected = toy_check.score(image, slot="ct")
    actual = loaded.score(image, slot="ct")
    assert actual.reason_code == expected.reason_code
    assert actual.score == pytest.approx(expected.score, abs=1e-4)


def test_params_from_other_features_are_refused(tmp_path):
    data = json.loads(DEFAULT_PARAMS_PATH.read_text())
    data["feature_names"] = data["feature_names"][:-1]
    path = tmp_path / "old_params.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="old_params.json.*other features"):
        InputCheckParams.from_json_file(path)


def test_params_with_a_missing_field_are_refused(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"kinds": list(IMAGE_KINDS)}))
    with pytest.raises(ValueError, match="broken.json.*cannot be read"):
        InputCheckParams.from_json_file(path)


def test_fit_input_check_needs_every_kind():
    features = [measure_image(_xray_like(seed)) for seed in range(3)]
    with pytest.raises(ValueError, match="at least 4"):
        fit_input_check(features, ["frontal_xray"] * 3)
    with pytest.raises(ValueError, match="unknown image kinds"):
        fit_input_check(features, ["frontal_xray", "mri", "ct_slice"])


def test_reference_phantoms_and_generated_images_are_measured_with_their_kind():
    phantoms = list(phantom_samples(3))
    assert [sample.kind for sample in phantoms] == ["phantom_xray", "phantom_ct"] * 3
    generated = list(generated_samples(1))
    assert [sample.group for sample in generated] == list(GENERATORS)
    assert {sample.kind for sample in generated} == {"non_medical"}
    for sample in phantoms + generated:
        assert sample.features.values.shape == (len(FEATURE_NAMES),)
    # Held out by a hash of the seed: both modalities of a phantom seed go to the same side.
    assert [s.held_out for s in phantoms] == [is_held_out(f"phantom/{i // 2}") for i in range(6)]
    assert [s.held_out for s in generated] == [is_held_out(f"{g}/0") for g in GENERATORS]


def test_held_out_choice_is_deterministic_and_near_its_fraction():
    keys = [f"patient/{index}" for index in range(2000)]
    chosen = [is_held_out(key) for key in keys]
    assert chosen == [is_held_out(key) for key in keys]
    assert abs(np.mean(chosen) - HELD_OUT_FRACTION) < 0.05
