"""Training-time augmentation of chest images, applied jointly to the image and its lung mask.

A whole batch is augmented at once: every sample draws its own random parameters (as tensors,
from torch's global random number generator, so `set_seed` makes a run reproducible), one
sampling grid is built for the whole batch (the grid of `F.affine_grid`, computed by
broadcasting, which is much cheaper on CPU), and one `grid_sample` call moves all images
(bilinear) and one all masks (nearest neighbour, so they stay 0/1) with the same geometry. Small
geometric changes (rotation, scale, translation) move image and mask together; brightness,
contrast and noise change the image only. The convention is torchvision's `RandomAffine`
(rotation about the image centre in pixel space, ``align_corners=False``, zeros outside the
image), without its loop over samples.

No horizontal flip by default: the heart is on the patient's left, and a flipped chest film is an
anatomically different (situs inversus) image, which would teach the model that laterality does
not matter.

Against shortcuts outside the lungs (text, markers, collimation, the hospital's look), the
outside-the-lungs augmentation (``outside_lungs_probability``) replaces, in a random share of the
images, everything outside the (slightly widened) lung mask: with zeros (``"blank"``), or with
the outside of another image of the batch (``"swap"``), whose class may differ, so that what lies
outside the lungs stops predicting the label (the masking of Maguolo and Nanni 2021 and the
background swap of DeGrave et al. 2021 point the same way). It needs a lung mask for every image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["OUTSIDE_LUNGS_FILLS", "ChestAugmentation"]

OUTSIDE_LUNGS_FILLS = ("blank", "swap")
"""Values of ``outside_lungs_fill``."""


def _uniform(low: float, high: float, count: int) -> torch.Tensor:
    """``count`` draws from U(low, high) with torch's global random number generator."""
    return torch.empty(count).uniform_(low, high)


def _affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, (B, C, height, width), align_corners=False)``, many times faster on CPU.

    ``F.affine_grid`` multiplies a (B, H * W, 3) base grid by ``theta``, which on CPU costs more
    than the sampling itself. Each grid coordinate is a term of the output column plus a term of
    the output row, so one broadcast addition builds x and y as (B, 2, H, W) planes; the grid is
    their (B, H, W, 2) view, which ``grid_sample`` reads as fast as a contiguous one.
    """
    options = {"dtype": theta.dtype, "device": theta.device}
    # Pixel centres in [-1, 1] (align_corners=False).
    columns = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, **options).view(1, 1, 1, width)
    rows = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, **options).view(1, 1, height, 1)
    coefficients = theta[..., None, None]  # (B, 2, 3, 1, 1)
    column_term = coefficients[:, :, 0] * columns  # (B, 2, 1, W)
    row_term = coefficients[:, :, 1] * rows + coefficients[:, :, 2]  # (B, 2, H, 1)
    return (row_term + column_term).permute(0, 2, 3, 1)


class ChestAugmentation:
    """Random affine, brightness/contrast and Gaussian noise for batches of images in [0, 1].

    Args:
        rotation_degrees: Rotations drawn from [-rotation_degrees, rotation_degrees].
        scale: Zoom factor range.
        translate: Largest shift, as a fraction of width and height.
        brightness: Brightness factor drawn from [1 - brightness, 1 + brightness].
        contrast: Contrast factor drawn from [1 - contrast, 1 + contrast], around each image's
            mean gray level.
        noise_std: Standard deviation of additive Gaussian noise (0 turns it off).
        horizontal_flip: Also flip left-right half of the time (off by default, see the module).
        outside_lungs_probability: Share of images whose outside of the lungs is replaced (0
            turns it off); needs the lung mask.
        outside_lungs_fill: ``"blank"`` (zeros) or ``"swap"`` (another image's outside).
        outside_lungs_dilation: The lung mask is widened by this fraction of the image side
            first, so the lung borders stay.

    Example:
        >>> augmentation = ChestAugmentation()
        >>> images, masks = augmentation.augment_batch(
        ...     torch.rand(8, 1, 64, 64), torch.ones(8, 1, 64, 64)
        ... )
    """

    def __init__(
        self,
        rotation_degrees: float = 7.0,
        scale: Sequence[float] = (0.9, 1.1),
        translate: float = 0.05,
        brightness: float = 0.1,
        contrast: float = 0.1,
        noise_std: float = 0.02,
        horizontal_flip: bool = False,
        outside_lungs_probability: float = 0.0,
        outside_lungs_fill: str = "swap",
        outside_lungs_dilation: float = 0.03,
    ):
        scale = tuple(scale)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
        for name, value in (
            ("rotation_degrees", rotation_degrees),
            ("translate", translate),
            ("brightness", brightness),
            ("contrast", contrast),
            ("noise_std", noise_std),
            ("outside_lungs_dilation", outside_lungs_dilation),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not 0 <= outside_lungs_probability <= 1:
            raise ValueError(
                f"outside_lungs_probability must be in [0, 1], got {outside_lungs_probability}"
            )
        if outside_lungs_fill not in OUTSIDE_LUNGS_FILLS:
            raise ValueError(
                f"outside_lungs_fill must be one of {OUTSIDE_LUNGS_FILLS}, got "
                f"{outside_lungs_fill!r}"
            )
        self.settings = {
            "rotation_degrees": rotation_degrees,
            "scale": scale,
            "translate": translate,
            "brightness": brightness,
            "contrast": contrast,
            "noise_std": noise_std,
            "horizontal_flip": horizontal_flip,
            "outside_lungs_probability": outside_lungs_probability,
            "outside_lungs_fill": outside_lungs_fill,
            "outside_lungs_dilation": outside_lungs_dilation,
        }

    @property
    def needs_lung_mask(self) -> bool:
        """Whether :meth:`augment_batch` needs the lung mask (the outside-the-lungs step)."""
        return self.settings["outside_lungs_probability"] > 0

    def _inverse_affine(self, count: int, height: int, width: int) -> torch.Tensor:
        """Random (count, 2, 3) output -> input maps in ``affine_grid``'s normalised coordinates."""
        settings = self.settings
        degrees = settings["rotation_degrees"]
        angle = torch.deg2rad(_uniform(-degrees, degrees, count))
        scale = _uniform(*settings["scale"], count)
        shift = _uniform(-settings["translate"], settings["translate"], 2 * count)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        # The inverse of "rotate by angle and zoom by scale about the centre, in pixels", written
        # in normalised coordinates: pixel x is x * width / 2, so the off-diagonal terms carry the
        # aspect ratio (a rotation of a non-square image stays a rotation).
        theta = torch.empty(count, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = cos, sin * (height / width)
        theta[:, 1, 0], theta[:, 1, 1] = -sin * (width / height), cos
        # A shift of translate * width pixels is 2 * translate in normalised coordinates.
        shift = 2 * shift.view(count, 2, 1)
        theta[:, :, 2:] = -theta[:, :, :2] @ shift
        if settings["horizontal_flip"]:
            flipped = torch.rand(count) < 0.5
            theta[flipped, 0] *= -1  # the flip comes first, so it mirrors the source x
        return theta

    def _augment_rows(
        self, images: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        count, _, height, width = images.shape
        theta = self._inverse_affine(count, height, width)
        grid = _affine_grid(theta.to(images), height, width)
        images = F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        if mask is not None:
            moved = F.grid_sample(
                mask.to(grid.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False
            )
            mask = moved.to(mask.dtype)
        # Brightness then contrast around the (moved) image's mean gray level, folded into one
        # gain and offset per image, b * (c * x + (1 - c) * mean(x)), and clamped once at the end.
        brightness, contrast = self.settings["brightness"], self.settings["contrast"]
        brightness = _uniform(max(0.0, 1 - brightness), 1 + brightness, count)
        contrast = _uniform(max(0.0, 1 - contrast), 1 + contrast, count)
        gain = (brightness * contrast).view(count, 1, 1, 1)
        offset = (brightness * (1 - contrast)).view(count, 1, 1, 1)
        offset = offset * images.mean(dim=(1, 2, 3), keepdim=True)
        images.mul_(gain).add_(offset)  # in place: grid_sample's output is ours
        if self.settings["noise_std"] > 0:
            images.add_(torch.randn_like(images), alpha=self.settings["noise_std"])
        images.clamp_(0.0, 1.0)
        if self.needs_lung_mask:
            images = self._replace_outside_lungs(images, mask)
        return images, mask

    def _replace_outside_lungs(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The outside-the-lungs step (see the module docstring) on augmented images."""
        count, _, height, width = images.shape
        chosen = (torch.rand(count) < self.settings["outside_lungs_probability"]).to(images.device)
        if not bool(chosen.any()):
            return images
        radius = round(self.settings["outside_lungs_dilation"] * max(height, width))
        lungs = mask.to(images.dtype)
        if radius > 0:
            lungs = F.max_pool2d(lungs, 2 * radius + 1, stride=1, padding=radius)
        outside = (lungs < 0.5) & chosen.view(count, 1, 1, 1)
        if self.settings["outside_lungs_fill"] == "swap":
            fill = images[torch.randperm(count, device=images.device)]
        else:
            fill = torch.zeros_like(images)
        return torch.where(outside, fill, images)

    def augment_batch(
        self,
        images: torch.Tensor,
        mask: torch.Tensor | None = None,
        apply: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augment a batch, each image (and its mask, with the same geometry) with its own draw.

        Args:
            images: (B, C, H, W) float tensor in [0, 1].
            mask: Optional (B, 1, H, W) 0/1 tensor, moved with its image and never recoloured.
            apply: Optional (B,) bool; rows where it is False (a missing modality) are returned
                unchanged.

        Returns:
            ``(images, mask)`` as new tensors (``mask`` None when not given); the inputs are left
            as they were.
        """
        if not images.is_floating_point():
            raise TypeError(f"ChestAugmentation expects float images in [0, 1], got {images.dtype}")
        if images.dim() != 4:
            raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
        count, _, height, width = images.shape
        if mask is None and self.needs_lung_mask:
            raise ValueError(
                "outside_lungs_probability > 0 needs the lung mask of every image (train with "
                "mask_model, a lung U-Net)"
            )
        if mask is not None and mask.shape != (count, 1, height, width):
            raise ValueError(
                f"mask must be {(count, 1, height, width)} for images of shape "
                f"{tuple(images.shape)}, got {tuple(mask.shape)}"
            )
        if apply is not None and apply.shape != (count,):
            raise ValueError(f"apply must be ({count},) bool, got shape {tuple(apply.shape)}")
        if apply is None or bool(apply.all()):
            return self._augment_rows(images, mask)
        rows = apply.nonzero().squeeze(1)
        images = images.clone()
        mask = None if mask is None else mask.clone()
        if len(rows):
            moved_images, moved_mask = self._augment_rows(
                images[rows], None if mask is None else mask[rows]
            )
            images[rows] = moved_images
            if mask is not None:
                mask[rows] = moved_mask
        return images, mask

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.settings.items())
        return f"{type(self).__name__}({settings})"
