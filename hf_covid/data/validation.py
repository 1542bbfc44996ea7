"""One input-validation policy for every image that enters hf_covid.

`load_image`, the dataset builders, the predictor and the app all check images against one
`InputPolicy`, so an image the app would refuse never enters a training set and the limits are
written down once. The checks run on what a file's header says (the real frame header for
compressed DICOM), before any pixel is decoded.

`DEFAULT_INPUT_POLICY` values and why:

* ``max_pixels`` 36 M (6000 x 6000): twice the largest chest detector (43 x 43 cm at 0.1 mm,
  4300 x 4300 = 18.5 M pixels); one such image as float32 is 144 MB, and training, Grad-CAM and the
  app hold a few copies. The earlier 67 M limit of `load_image` had no reason behind it, and the
  app already used 36 M.
* ``min_side`` 8: the app's limit; a 1 x 1 or 4 x 4 "image" carries no anatomy and would be
  upsampled into a flat square.
* ``max_file_bytes`` 256 MiB: above the largest honest file at the pixel limit (36 M pixels of
  uncompressed 16-bit RGB is 216 MB), so only files that cannot be a chest image are refused
  unread.
* masks: a mask must show the image's field of view, so its aspect ratio must match the image's
  within 2 %; a mask of the same aspect ratio but another size is resized (and counted), one of
  another aspect ratio is rejected, at build time as in the app.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["DEFAULT_INPUT_POLICY", "InputPolicy", "InputPolicyError"]


class InputPolicyError(ValueError):
    """An image or mask breaks the `InputPolicy`; the message says how, without a file name.

    Callers add the file or input name: `load_image` raises `ImageReadError`, the builders list
    the file as a bad file, the app shows the message.
    """


@dataclass(frozen=True)
class InputPolicy:
    """Limits every input image and mask must meet (see the module docstring for the defaults).

    Attributes:
        max_pixels: Largest width x height accepted, checked before decoding (decompression bombs).
        min_side: Smallest width and height accepted.
        max_file_bytes: Largest file accepted, checked before reading it.
        mask_aspect_tolerance: Largest relative difference between a mask's and its image's
            aspect ratio (width / height).
        resize_masks: Resize a mask of the image's aspect ratio but another size (True), or
            reject every mask whose size differs from its image (False).
    """

    max_pixels: int = 36_000_000
    min_side: int = 8
    max_file_bytes: int = 256 * 2**20
    mask_aspect_tolerance: float = 0.02
    resize_masks: bool = True

    def __post_init__(self) -> None:
        if self.max_pixels < 1 or self.min_side < 1 or self.max_file_bytes < 1:
            raise ValueError(
                "max_pixels, min_side and max_file_bytes must be positive, got "
                f"{self.max_pixels}, {self.min_side}, {self.max_file_bytes}"
            )
        if self.min_side**2 > self.max_pixels:
            raise ValueError(
                f"min_side={self.min_side} admits no image under max_pixels={self.max_pixels}"
            )
        if not 0 <= self.mask_aspect_tolerance < 1:
            raise ValueError(
                f"mask_aspect_tolerance must lie in [0, 1), got {self.mask_aspect_tolerance}"
            )

    def with_max_pixels(self, max_pixels: int | None) -> InputPolicy:
        """This policy with another pixel limit (None keeps this one's)."""
        if max_pixels is None or max_pixels == self.max_pixels:
            return self
        return dataclasses.replace(self, max_pixels=max_pixels)

    def check_file_size(self, size: int) -> None:
        """Refuse a file of ``size`` bytes over ``max_file_bytes``.

        Raises:
            InputPolicyError: The file is too large.
        """
        if size > self.max_file_bytes:
            raise InputPolicyError(
                f"the file is {size:,} bytes, more than max_file_bytes={self.max_file_bytes:,}"
            )

    def check_image_size(self, width: int, height: int) -> None:
        """Refuse an image of ``width`` x ``height`` pixels outside the limits.

        Raises:
            InputPolicyError: Too many pixels (possible decompression bomb) or a side too small.
        """
        if width * height > self.max_pixels:
            raise InputPolicyError(
                f"{width}x{height} = {width * height:,} pixels is more than "
                f"max_pixels={self.max_pixels:,} (possible decompression bomb; raise max_pixels "
                "if the file is trusted)"
            )
        if min(width, height) < self.min_side:
            raise InputPolicyError(
                f"the image is {width}x{height} pixels; need at least {self.min_side}x{self.min_side}"
            )

    def check_mask_shape(self, mask_shape: tuple[int, int], image_shape: tuple[int, int]) -> bool:
        """Whether a mask fits its image, and must be resized to it.

        Args:
            mask_shape: The mask's ``(height, width)``.
            image_shape: The image's ``(height, width)``.

        Returns:
            True when the mask has another size (same aspect ratio) and must be resized,
            False when it has the image's size.

        Raises:
            InputPolicyError: The aspect ratios differ by more than ``mask_aspect_tolerance``,
                or the sizes differ and ``resize_masks`` is False.
        """
        if tuple(mask_shape) == tuple(image_shape):
            return False
        (mask_height, mask_width), (image_height, image_width) = mask_shape, image_shape
        sizes = f"mask is {mask_width}x{mask_height} but the image is {image_width}x{image_height}"
        if not self.resize_masks:
            raise InputPolicyError(f"{sizes}: the mask must have the image's size")
        ratio = (mask_width / mask_height) / (image_width / image_height)
        if abs(ratio - 1) > self.mask_aspect_tolerance:
            raise InputPolicyError(
                f"{sizes}: the mask must have the image's size or at least its aspect ratio "
                f"(within {self.mask_aspect_tolerance:.0%})"
            )
        return True


DEFAULT_INPUT_POLICY = InputPolicy()
"""The policy `load_image`, the builders, the predictor and the app use unless told otherwise."""
