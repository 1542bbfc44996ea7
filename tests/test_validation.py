"""`hf_covid.data.validation`: the one input policy shared by load_image, builders and the app."""

from __future__ import annotations

import pytest

from hf_covid.data.validation import DEFAULT_INPUT_POLICY, InputPolicy, InputPolicyError


def test_mask_of_the_image_size_needs_no_resize():
    assert DEFAULT_INPUT_POLICY.check_mask_shape((299, 299), (299, 299)) is False


def test_mask_of_the_image_aspect_ratio_is_resized():
    assert DEFAULT_INPUT_POLICY.check_mask_shape((256, 256), (299, 299)) is True
    # 1 % off in aspect ratio is within the 2 % tolerance.
    assert DEFAULT_INPUT_POLICY.check_mask_shape((100, 202), (200, 400)) is True


def test_mask_of_another_aspect_ratio_is_rejected():
    with pytest.raises(InputPolicyError, match="mask is 128x256 but the image is 299x299"):
        DEFAULT_INPUT_POLICY.check_mask_shape((256, 128), (299, 299))


def test_policy_without_mask_resizing_rejects_any_other_size():
    strict = InputPolicy(resize_masks=False)
    with pytest.raises(InputPolicyError, match="must have the image's size"):
        strict.check_mask_shape((256, 256), (299, 299))
    assert strict.check_mask_shape((299, 299), (299, 299)) is False


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        (1, 1, "1x1 pixels; need at least 8x8"),
        (7, 500, "7x500 pixels; need at least 8x8"),
        (6001, 6000, "6001x6000 = 36,006,000 pixels is more than max_pixels=36,000,000"),
    ],
)
def test_image_size_outside_the_limits_is_refused(width, height, message):
    with pytest.raises(InputPolicyError, match=message):
        DEFAULT_INPUT_POLICY.check_image_size(width, height)


def test_image_size_at_the_limits_is_accepted():
    DEFAULT_INPUT_POLICY.check_image_size(8, 8)
    DEFAULT_INPUT_POLICY.check_image_size(6000, 6000)


def test_file_size_limit():
    policy = InputPolicy(max_file_bytes=1000)
    policy.check_file_size(1000)
    with pytest.raises(InputPolicyError, match="1,001 bytes, more than max_file_bytes=1,000"):
        policy.check_file_size(1001)


def test_with_max_pixels_overrides_only_the_pixel_limit():
    policy = DEFAULT_INPUT_POLICY.with_max_pixels(1_000_000)
    assert policy.max_pixels == 1_000_000
    assert policy.min_side == DEFAULT_INPUT_POLICY.min_side
    assert DEFAULT_INPUT_POLICY.with_max_pixels(None) is DEFAULT_INPUT_POLICY


@pytest.mark.parametrize(
    "arguments",
    [{"max_pixels": 0}, {"min_side": 100, "max_pixels": 50}, {"mask_aspect_tolerance": 1.5}],
)
def test_inconsistent_policy_is_refused(arguments):
    with pytest.raises(ValueError):
        InputPolicy(**arguments)
