"""Training-time augmentation of chest images, applied jointly to the image and its lung mask.

Small geometric changes (rotation, scale, translation) move image and mask together
(`torchvision.transforms.v2` with a `tv_tensors.Mask`, which is resampled with nearest neighbour);
brightness, contrast and noise change the image only. No horizontal flip by default: the heart is
on the patient's left, and a flipped chest film is an anatomically different (situs inversus)
image, which would teach the model that laterality does not matter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2


class ChestAugmentation:
    """Random affine, brightness/contrast and Gaussian noise for (C, H, W) float images in [0, 1].

    Args:
        rotation_degrees: Rotations drawn from [-rotation_degrees, rotation_degrees].
        scale: Zoom factor range.
        translate: Largest shift, as a fraction of width and height.
        brightness: Brightness factor drawn from [1 - brightness, 1 + brightness].
        contrast: Contrast factor drawn from [1 - contrast, 1 + contrast].
        noise_std: Standard deviation of additive Gaussian noise (0 turns it off).
        horizontal_flip: Also flip left-right half of the time (off by default, see the module).

    Example:
        >>> augmentation = ChestAugmentation()
        >>> image, mask = augmentation(torch.rand(1, 64, 64), torch.ones(1, 64, 64))
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
    ):
        self.settings = {
            "rotation_degrees": rotation_degrees,
            "scale": tuple(scale),
            "translate": translate,
            "brightness": brightness,
            "contrast": contrast,
            "noise_std": noise_std,
            "horizontal_flip": horizontal_flip,
        }
        transforms: list[v2.Transform] = []
        if horizontal_flip:
            transforms.append(v2.RandomHorizontalFlip())
        transforms.append(
            v2.RandomAffine(
                degrees=rotation_degrees,
                translate=(translate, translate),
                scale=tuple(scale),
                interpolation=v2.InterpolationMode.BILINEAR,
                fill=0,
            )
        )
        if brightness or contrast:
            transforms.append(
                v2.ColorJitter(brightness=brightness or None, contrast=contrast or None)
            )
        if noise_std > 0:
            transforms.append(v2.GaussianNoise(sigma=noise_std, clip=True))
        self.transform = v2.Compose(transforms)

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augment one image, and its mask with the same geometry.

        Args:
            image: (C, H, W) float tensor in [0, 1].
            mask: Optional (1, H, W) tensor, moved with the image and never recoloured.

        Returns:
            ``(image, mask)`` as plain tensors (``mask`` None when not given).
        """
        if not image.is_floating_point():
            raise TypeError(f"ChestAugmentation expects a float image in [0, 1], got {image.dtype}")
        if mask is None:
            return self.transform(tv_tensors.Image(image)).as_subclass(torch.Tensor), None
        augmented, augmented_mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return augmented.as_subclass(torch.Tensor), augmented_mask.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.settings.items())
        return f"{type(self).__name__}({settings})"
