"""ChestImageProcessor: grayscale chest X-ray / CT preprocessing for every hf_covid model.

A torchvision-backend image processor (`transformers.image_processing_backends.TorchvisionBackend`)
saved as ``preprocessor_config.json`` and loadable as remote code: this file imports only torch,
torchvision, numpy, PIL and transformers, because it is copied next to a checkpoint.

Steps: any input (PIL image of any mode, numpy array such as `hf_covid.data.load_image` returns,
torch tensor) becomes one grayscale channel on a 0-255 scale (16-bit inputs rescaled by their bit
depth, float inputs in [0, 1] multiplied by 255); optionally cropped to the lungs
(``lung_crop_margin``: the bounding box of the lung mask given as ``masks``, widened by the
margin; the checkpoint's lung U-Net makes that mask, named
by ``lung_crop_segmenter``); optionally standardised in intensity (``intensity_standardization``:
``"equalize"``, global histogram equalisation, or ``"clahe"``, contrast-limited adaptive
equalisation); resized to ``size`` (224x224 by default); rescaled by ``rescale_factor`` (to
[0, 1]); repeated to ``num_channels`` (3 for ImageNet-pretrained backbones) and optionally
normalised (:meth:`ChestImageProcessor.to_model_input`, which the training collator shares).
Lung masks given as ``masks`` are cropped with the image, resized with nearest neighbour and
binarised to 0/1, returned as ``lung_mask`` (B, 1, H, W). With the lung crop, the output also
holds ``lung_crop_box`` (B, 4): top, left, bottom, right as fractions of the input's height and
width, and ``lung_crop_status`` (B,): an index into `LUNG_CROP_STATUSES` (an empty mask, or one
that covers nearly the whole image, leaves the image uncropped).

Example::

    >>> processor = ChestImageProcessor(size={"height": 224, "width": 224}, num_channels=3,
    ...     do_normalize=True, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    >>> batch = processor(images=[xray], masks=[mask], return_tensors="pt")
    >>> batch["pixel_values"].shape, batch["lung_mask"].shape
    (torch.Size([1, 3, 224, 224]), torch.Size([1, 1, 224, 224]))
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as tvF
from transformers import ViTImageProcessor
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_transforms import group_images_by_shape, reorder_images
from transformers.image_utils import PILImageResampling, SizeDict
from transformers.processing_utils import ImagesKwargs, Unpack

__all__ = [
    "INTENSITY_STANDARDIZATIONS",
    "LUNG_CROP_STATUSES",
    "LUNG_SEGMENTER_FOLDER",
    "ChestImageProcessor",
    "clahe",
    "lung_crop_box",
]

_LUMINANCE = (0.299, 0.587, 0.114)
_SIXTEEN_BIT_PIL_MODES = ("I;16", "I;16B", "I;16L", "I;16N")

LUNG_SEGMENTER_FOLDER = "lung_segmenter"
"""The sub-folder of a checkpoint holding its own lung U-Net, the one its processor's
``lung_crop_segmenter`` names and whose masks it was trained with."""
INTENSITY_STANDARDIZATIONS = ("none", "equalize", "clahe")
"""Values of ``intensity_standardization``."""
LUNG_CROP_STATUSES = ("cropped", "empty mask", "mask covers the image")
"""What the lung crop did to an image (``lung_crop_status`` indexes it); only the first crops."""
MIN_LUNG_FRACTION = 0.01
"""A crop mask covering less of the image than this is empty: the image stays uncropped."""
MAX_LUNG_FRACTION = 0.9
"""A crop mask covering more of the image than this is no lung outline: uncropped."""
_BOX_QUANTILES = (0.005, 0.995)
"""The lung box spans these quantiles of the mask's rows and columns, so that a few stray
pixels far from the lungs do not widen it."""


class ChestImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    num_channels (`int`, *optional*, defaults to `self.num_channels`):
        Output channels: 1 (grayscale models) or 3 (the gray channel repeated, for
        ImageNet-pretrained backbones).
    mask_threshold (`float`, *optional*, defaults to `self.mask_threshold`):
        Masks are binarised at this fraction of their full scale (0.5: 128 of 255).
    lung_crop_margin (`float`, *optional*, defaults to `self.lung_crop_margin`):
        Crop to the bounding box of the lung mask widened by this fraction of its size on every
        side; None: no crop.
    lung_crop_segmenter (`str`, *optional*, defaults to `self.lung_crop_segmenter`):
        The lung U-Net that makes the crop masks: a subfolder of the checkpoint, a folder or a
        Hub id (recorded; the processor itself is given the masks).
    intensity_standardization (`str`, *optional*, defaults to `self.intensity_standardization`):
        "none", "equalize" (global histogram equalisation) or "clahe".
    clahe_clip_limit (`float`, *optional*, defaults to `self.clahe_clip_limit`):
        CLAHE's clip limit, in multiples of the mean histogram count of a tile.
    clahe_tiles (`int`, *optional*, defaults to `self.clahe_tiles`):
        CLAHE's tiles per side.
    """

    num_channels: int
    mask_threshold: float
    lung_crop_margin: float | None
    lung_crop_segmenter: str | None
    intensity_standardization: str
    clahe_clip_limit: float
    clahe_tiles: int


def _full_scale(array: np.ndarray, *, is_mask: bool) -> float:
    """The value that means white: by bit depth for integers, 1 for [0, 1] floats."""
    if array.dtype == np.bool_:
        return 1.0
    maximum = float(array.max()) if array.size else 0.0
    if np.issubdtype(array.dtype, np.floating):
        return 1.0 if maximum <= 1.0 else 255.0
    if is_mask and maximum <= 1:
        return 1.0  # a 0/1 label map
    if array.dtype == np.uint8:
        return 255.0
    if array.dtype == np.uint16 or maximum > 255:
        return 65535.0
    return 255.0


def _to_grayscale_255(image: Any, *, is_mask: bool = False) -> torch.Tensor:
    """One image (PIL, numpy or torch) as a float32 (1, H, W) tensor on a 0-255 scale.

    Integers are rescaled by their bit depth (uint8 kept, 16-bit divided by 257), floats with a
    maximum of at most 1 are taken as [0, 1]; colour inputs become luminance (alpha ignored). For
    masks, integer label maps holding 0/1 map 1 to 255.
    """
    if isinstance(image, Image.Image):
        if image.mode in _SIXTEEN_BIT_PIL_MODES:
            array = np.asarray(image).astype(np.uint16)
        elif image.mode in ("I", "F", "1", "L"):
            array = np.asarray(image)
        else:
            array = np.asarray(image.convert("L"))
    elif isinstance(image, torch.Tensor):
        array = image.detach().cpu().numpy()
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise TypeError(f"expected a PIL image, numpy array or torch tensor, got {type(image)}")
    if array.ndim == 3 and array.shape[0] not in (1, 3, 4) and array.shape[-1] in (1, 3, 4):
        array = np.moveaxis(array, -1, 0)  # channels last -> first
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] not in (1, 3, 4):
        raise ValueError(
            "expected an image of shape (H, W), (C, H, W) or (H, W, C) with C in 1, 3, 4; got "
            f"{tuple(array.shape)}"
        )
    values = torch.from_numpy(
        array.astype(np.float32) * (255.0 / _full_scale(array, is_mask=is_mask))
    )
    if values.shape[0] >= 3:
        values = (values[:3] * torch.tensor(_LUMINANCE).view(3, 1, 1)).sum(dim=0, keepdim=True)
    return values.contiguous()


def lung_crop_box(mask: torch.Tensor, margin: float) -> tuple[tuple[int, int, int, int], int]:
    """The crop box of a binary (H, W) lung mask and its `LUNG_CROP_STATUSES` index.

    The box spans the mask's rows and columns (between `_BOX_QUANTILES`), widened by ``margin``
    times its height and width on each side and clipped to the image. It is not made square:
    widening it would bring back what lies beside the lungs (markers, text), so the resize that
    follows stretches it a little instead, the same way in training and serving.

    Returns:
        ``((top, left, bottom, right), status)`` in pixels (bottom and right exclusive); the
        whole image when the status is not "cropped".
    """
    height, width = mask.shape
    whole = (0, 0, height, width)
    fraction = float(mask.float().mean()) if mask.numel() else 0.0
    if fraction < MIN_LUNG_FRACTION:
        return whole, 1
    if fraction > MAX_LUNG_FRACTION:
        return whole, 2
    quantiles = torch.tensor(_BOX_QUANTILES, dtype=torch.float64)
    box = []
    for axis, size in ((1, height), (0, width)):
        counts = mask.sum(dim=axis).double()
        low, high = torch.searchsorted(counts.cumsum(0) / counts.sum(), quantiles).tolist()
        extent = high - low + 1
        box.append(
            (max(0, round(low - margin * extent)), min(size, round(high + 1 + margin * extent)))
        )
    (top, bottom), (left, right) = box
    return (top, left, bottom, right), 0


def clahe(image: torch.Tensor, clip_limit: float = 2.0, tiles: int = 8) -> torch.Tensor:
    """Contrast-limited adaptive histogram equalisation of a (1, H, W) image on a 0-255 scale.

    Zuiderveld, "Contrast Limited Adaptive Histogram Equalization", Graphics Gems IV (1994): a
    histogram per tile of a ``tiles`` x ``tiles`` grid, clipped at ``clip_limit`` times its mean
    count (the excess spread over every bin), mapped through its cumulative sum, and the four
    nearest tiles' mappings interpolated bilinearly at every pixel.
    """
    values = image[0].round().clamp(0, 255).to(torch.int64)
    height, width = values.shape
    tile_height, tile_width = -(-height // tiles), -(-width // tiles)
    padded = torch.nn.functional.pad(
        values[None, None].float(),
        (0, tile_width * tiles - width, 0, tile_height * tiles - height),
        mode="replicate",
    )[0, 0].to(torch.int64)
    per_tile = (
        padded.view(tiles, tile_height, tiles, tile_width)
        .permute(0, 2, 1, 3)
        .reshape(tiles * tiles, -1)
    )
    histogram = torch.zeros(tiles * tiles, 256, dtype=torch.float64)
    histogram.scatter_add_(1, per_tile, torch.ones_like(per_tile, dtype=torch.float64))
    limit = max(1.0, clip_limit * per_tile.shape[1] / 256)
    excess = (histogram - limit).clamp(min=0).sum(dim=1, keepdim=True)
    histogram = histogram.clamp(max=limit) + excess / 256
    mapping = (histogram.cumsum(dim=1) * (255.0 / per_tile.shape[1])).view(tiles, tiles, 256)

    def neighbours(size: int, tile: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        position = ((torch.arange(size, dtype=torch.float64) + 0.5) / tile - 0.5).clamp(
            0, tiles - 1
        )
        low = position.floor().long()
        return low, (low + 1).clamp(max=tiles - 1), position - low

    top, bottom, down = neighbours(height, tile_height)
    left, right, across = neighbours(width, tile_width)
    down, across = down[:, None], across[None, :]

    def mapped(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        return mapping[rows[:, None], columns[None, :], values]

    result = (1 - down) * (
        (1 - across) * mapped(top, left) + across * mapped(top, right)
    ) + down * ((1 - across) * mapped(bottom, left) + across * mapped(bottom, right))
    return result.clamp(0, 255).to(torch.float32)[None]


class ChestImageProcessor(TorchvisionBackend):
    r"""Image processor for grayscale chest X-rays and CT slices, with optional lung masks.

    Args:
        size (`dict[str, int]` or `int`, *optional*, defaults to `{"height": 224, "width": 224}`):
            Output size.
        do_rescale (`bool`, *optional*, defaults to `True`): Rescale 0-255 values to [0, 1].
        do_normalize (`bool`, *optional*, defaults to `False`): Normalise with mean and std.
        image_mean, image_std (`list[float]`, *optional*): One value, or one per output channel.
        num_channels (`int`, *optional*, defaults to 1): 1, or 3 for ImageNet-pretrained models.
        mask_threshold (`float`, *optional*, defaults to 0.5): Mask binarisation threshold.
        lung_crop_margin (`float`, *optional*): Crop to the lungs (the ``masks``' bounding box
            widened by this fraction on every side); None: no crop.
        lung_crop_segmenter (`str`, *optional*): The lung U-Net that makes the crop masks (a
            subfolder of the checkpoint, a folder or a Hub id).
        intensity_standardization (`str`, *optional*, defaults to "none"): "none", "equalize" or
            "clahe" (after the crop, before the resize).
        clahe_clip_limit (`float`, *optional*, defaults to 2.0), clahe_tiles (`int`, *optional*,
            defaults to 8): CLAHE's settings.
    """

    valid_kwargs = ChestImageProcessorKwargs
    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BILINEAR
    size = {"height": 224, "width": 224}
    default_to_square = True
    do_resize = True
    do_center_crop = False
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = False
    image_mean = None
    image_std = None
    do_convert_rgb = False
    num_channels = 1
    mask_threshold = 0.5
    lung_crop_margin = None
    lung_crop_segmenter = None
    intensity_standardization = "none"
    clahe_clip_limit = 2.0
    clahe_tiles = 8

    def __init__(self, **kwargs: Unpack[ChestImageProcessorKwargs]):
        super().__init__(**kwargs)
        self._check_channels(self.num_channels, self.image_mean, self.image_std)
        self._check_steps(self.lung_crop_margin, self.intensity_standardization)

    @property
    def crops_lungs(self) -> bool:
        """Whether :meth:`preprocess` crops every image to its lungs (and so needs masks)."""
        return self.lung_crop_margin is not None

    @staticmethod
    def _check_steps(lung_crop_margin: float | None, intensity_standardization: str) -> None:
        if lung_crop_margin is not None and not 0 <= lung_crop_margin <= 1:
            raise ValueError(f"lung_crop_margin must be in [0, 1] or None, got {lung_crop_margin}")
        if intensity_standardization not in INTENSITY_STANDARDIZATIONS:
            raise ValueError(
                f"intensity_standardization must be one of {INTENSITY_STANDARDIZATIONS}, got "
                f"{intensity_standardization!r}"
            )

    @staticmethod
    def _check_channels(num_channels: int, image_mean, image_std) -> None:
        if num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 or 3, got {num_channels}")
        for name, value in (("image_mean", image_mean), ("image_std", image_std)):
            if value is None or isinstance(value, int | float):
                continue
            if len(value) not in (1, num_channels):
                raise ValueError(
                    f"{name} must hold 1 or num_channels={num_channels} values, got {list(value)}"
                )

    def preprocess(
        self,
        images: Any,
        masks: Any | None = None,
        **kwargs: Unpack[ChestImageProcessorKwargs],
    ) -> BatchFeature:
        r"""Preprocess images and, optionally, their lung masks.

        Args:
            images: One image or a list of images (PIL, numpy arrays, tensors); a 4-D array or
                tensor is a batch.
            masks: Lung masks matching ``images`` one to one (same kinds of input), or None;
                required when the processor crops to the lungs.
            **kwargs: Overrides of the processor's settings, and ``return_tensors``.

        Returns:
            `BatchFeature` with ``pixel_values`` (B, C, H, W) and, with masks, ``lung_mask``
            (B, 1, H, W) holding 0/1; with the lung crop, ``lung_crop_box`` (B, 4) and
            ``lung_crop_status`` (B,) (see the module docstring).

        Raises:
            ValueError: the processor crops to the lungs and no masks were given, or the
                numbers of images and masks differ.
        """
        return super().preprocess(images, masks, **kwargs)

    def _prepare_images_structure(self, images: Any, expected_ndims: int = 3) -> list:
        """A flat list of single images; 2-D arrays are grayscale images, 4-D ones batches."""
        images = self.fetch_images(images)  # paths and URLs -> images
        if isinstance(images, list | tuple):
            return [image for item in images for image in self._prepare_images_structure(item)]
        if isinstance(images, np.ndarray | torch.Tensor) and images.ndim == 4:
            return list(images)
        return [images]

    def process_image(
        self, image: Any, device: torch.device | None = None, **kwargs
    ) -> torch.Tensor:
        """One image as a float32 (1, H, W) tensor on a 0-255 scale."""
        tensor = _to_grayscale_255(image)
        return tensor.to(device) if device is not None else tensor

    def _preprocess_image_like_inputs(
        self,
        images: Any,
        masks: Any | None,
        *,
        return_tensors: str | None = None,
        device: torch.device | None = None,
        **kwargs,
    ) -> BatchFeature:
        self._check_channels(kwargs["num_channels"], kwargs["image_mean"], kwargs["image_std"])
        self._check_steps(kwargs["lung_crop_margin"], kwargs["intensity_standardization"])
        prepared = self._prepare_image_like_inputs(images, device=device)
        binary = None
        if masks is not None:
            mask_list = self._prepare_images_structure(masks)
            if len(mask_list) != len(prepared):
                raise ValueError(f"got {len(prepared)} images but {len(mask_list)} masks")
            threshold = 255.0 * kwargs["mask_threshold"]
            binary = [
                (_to_grayscale_255(mask, is_mask=True) >= threshold).float() for mask in mask_list
            ]
            if device is not None:
                binary = [mask.to(device) for mask in binary]
        data: dict[str, Any] = {}
        if kwargs["lung_crop_margin"] is not None:
            if binary is None:
                raise ValueError(
                    "this processor crops to the lungs (lung_crop_margin="
                    f"{kwargs['lung_crop_margin']}): pass masks=..., the lung masks of the images "
                    f"(made by its lung U-Net, {kwargs['lung_crop_segmenter'] or 'not named'})"
                )
            prepared, binary, boxes, statuses = self._crop_to_lungs(
                prepared, binary, kwargs["lung_crop_margin"]
            )
            data["lung_crop_box"] = boxes
            data["lung_crop_status"] = statuses
        prepared = [self._standardize_intensity(image, **kwargs) for image in prepared]
        data["pixel_values"] = self._preprocess(prepared, **kwargs)
        if binary is not None:
            data["lung_mask"] = [
                tvF.resize(
                    mask,
                    [kwargs["size"].height, kwargs["size"].width],
                    tvF.InterpolationMode.NEAREST_EXACT,
                )
                if kwargs["do_resize"]
                else mask
                for mask in binary
            ]
        return BatchFeature(data=data, tensor_type=return_tensors)

    @staticmethod
    def _crop_to_lungs(
        images: list[torch.Tensor], masks: list[torch.Tensor], margin: float
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[list[float]], list[int]]:
        """Each image and its mask cropped to the lungs (see `lung_crop_box`); the boxes as
        fractions of the image's height and width, and the statuses."""
        cropped_images, cropped_masks, boxes, statuses = [], [], [], []
        for image, mask in zip(images, masks, strict=True):
            height, width = image.shape[-2:]
            if mask.shape[-2:] != image.shape[-2:]:
                mask = tvF.resize(mask, [height, width], tvF.InterpolationMode.NEAREST_EXACT)
            (top, left, bottom, right), status = lung_crop_box(mask[0] > 0.5, margin)
            cropped_images.append(image[..., top:bottom, left:right])
            cropped_masks.append(mask[..., top:bottom, left:right])
            boxes.append([top / height, left / width, bottom / height, right / width])
            statuses.append(status)
        return cropped_images, cropped_masks, boxes, statuses

    @staticmethod
    def _standardize_intensity(
        image: torch.Tensor,
        intensity_standardization: str,
        clahe_clip_limit: float,
        clahe_tiles: int,
        **kwargs,
    ) -> torch.Tensor:
        """One (1, H, W) 0-255 image with its intensities standardised as configured."""
        if intensity_standardization == "equalize":
            return tvF.equalize(image.round().clamp(0, 255).to(torch.uint8)).to(torch.float32)
        if intensity_standardization == "clahe":
            return clahe(image, clahe_clip_limit, clahe_tiles)
        return image

    def resize_steps(self) -> ChestImageProcessor:
        """A processor that does this one's steps up to the resize and no further.

        Lung crop, intensity standardisation and resize, giving one channel on a 0-255 scale:
        what the training cache stores as uint8 before the collator finishes each batch with
        :meth:`to_model_input` (after augmentation).
        """
        return type(self)(
            do_resize=self.do_resize,
            size=dict(self.size),
            resample=self.resample,
            do_rescale=False,
            do_normalize=False,
            num_channels=1,
            mask_threshold=self.mask_threshold,
            lung_crop_margin=self.lung_crop_margin,
            lung_crop_segmenter=self.lung_crop_segmenter,
            intensity_standardization=self.intensity_standardization,
            clahe_clip_limit=self.clahe_clip_limit,
            clahe_tiles=self.clahe_tiles,
        )

    def to_model_input(self, images: torch.Tensor) -> torch.Tensor:
        """The last step of :meth:`preprocess` on resized (B, 1, H, W) images in [0, 1].

        Repeats the gray channel to ``num_channels`` and normalises when ``do_normalize``. The
        training collator calls it after augmentation, so training and serving feed a model the
        same values for the same image.
        """
        return self._channels_and_normalize(
            images, self.num_channels, self.do_normalize, self.image_mean, self.image_std
        )

    def post_process_semantic_segmentation(
        self,
        outputs: Any,
        target_sizes: list[tuple[int, int]] | None = None,
        threshold: float | None = None,
    ) -> list[torch.Tensor]:
        """Label maps from a segmentation model's logits, in the transformers format.

        What the ``image-segmentation`` pipeline calls. One logit channel (the lung U-Net) is a
        sigmoid probability, thresholded at ``threshold`` (default ``mask_threshold``): 1 is the
        foreground class; several channels take the arg-max.

        Args:
            outputs: The model output (``logits`` of shape (batch, channels, height, width)).
            target_sizes: (height, width) per image to resize to (bilinear, on the logits), or
                None to keep the logits' size.
            threshold: Foreground probability threshold for one-channel logits.

        Returns:
            One (height, width) tensor of class indices per image.
        """
        logits = outputs["logits"]
        if target_sizes is not None and len(target_sizes) != len(logits):
            raise ValueError(
                f"got {len(target_sizes)} target sizes for a batch of {len(logits)} logits"
            )
        threshold = self.mask_threshold if threshold is None else threshold
        label_maps = []
        for index, sample in enumerate(logits.float()):
            if target_sizes is not None:
                sample = tvF.resize(
                    sample,
                    list(target_sizes[index]),
                    tvF.InterpolationMode.BILINEAR,
                    antialias=False,
                )
            if sample.shape[0] == 1:
                label_maps.append((sample[0].sigmoid() > threshold).long())
            else:
                label_maps.append(sample.argmax(dim=0))
        return label_maps

    @property
    def has_stock_equivalent(self) -> bool:
        """Whether :meth:`to_stock_image_processor` gives the same input: 3 channels, and no
        lung crop or intensity standardisation (no stock processor has them)."""
        return (
            self.num_channels == 3
            and not self.crops_lungs
            and self.intensity_standardization == "none"
        )

    def to_stock_image_processor(self) -> ViTImageProcessor:
        """The transformers ``ViTImageProcessor`` that gives a 3-channel model the same input.

        For grayscale images it resizes, rescales and normalises as this processor does (up to
        the rounding of resized 8-bit pixels), so a checkpoint saved with it loads and runs in
        ``pipeline("image-classification")`` with no remote code. Colour images stay colour in
        it (this processor takes their luminance).

        Raises:
            ValueError: no stock equivalent (see :attr:`has_stock_equivalent`).
        """
        if not self.has_stock_equivalent:
            raise ValueError(
                "only a 3-channel ChestImageProcessor without lung crop or intensity "
                "standardisation has a stock transformers equivalent, got "
                f"num_channels={self.num_channels}, lung_crop_margin={self.lung_crop_margin}, "
                f"intensity_standardization={self.intensity_standardization!r}"
            )
        return ViTImageProcessor(
            do_resize=self.do_resize,
            size=dict(self.size),
            resample=self.resample,
            do_rescale=self.do_rescale,
            rescale_factor=self.rescale_factor,
            do_normalize=self.do_normalize,
            image_mean=self.image_mean,
            image_std=self.image_std,
            do_convert_rgb=True,
        )

    @classmethod
    def from_stock_image_processor(cls, processor: ViTImageProcessor) -> ChestImageProcessor:
        """The 3-channel ``ChestImageProcessor`` of a processor :meth:`to_stock_image_processor`
        made (what hf_covid's own inference, with masks and DICOM arrays, works with)."""
        return cls(
            do_resize=processor.do_resize,
            size=dict(processor.size),
            resample=processor.resample,
            do_rescale=processor.do_rescale,
            rescale_factor=processor.rescale_factor,
            do_normalize=processor.do_normalize,
            image_mean=processor.image_mean,
            image_std=processor.image_std,
            num_channels=3,
        )

    def _channels_and_normalize(
        self,
        images: torch.Tensor,
        num_channels: int,
        do_normalize: bool,
        image_mean: float | list[float] | None,
        image_std: float | list[float] | None,
    ) -> torch.Tensor:
        if num_channels == 3 and images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if do_normalize:
            images = self.normalize(images.to(torch.float32), image_mean, image_std)
        return images.contiguous()

    def _preprocess(
        self,
        images: list[torch.Tensor],
        do_resize: bool,
        size: SizeDict,
        resample: Any,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean: float | list[float] | None,
        image_std: float | list[float] | None,
        num_channels: int,
        disable_grouping: bool | None = None,
        **kwargs,
    ) -> list[torch.Tensor]:
        grouped, grouped_index = group_images_by_shape(images, disable_grouping=disable_grouping)
        processed = {}
        for shape, stacked in grouped.items():
            if do_resize:
                # Clamp: antialiased resizing may overshoot a little at sharp edges.
                stacked = self.resize(stacked, size=size, resample=resample).clamp_(0.0, 255.0)
            if do_rescale:
                stacked = self.rescale(stacked, rescale_factor)
            processed[shape] = self._channels_and_normalize(
                stacked, num_channels, do_normalize, image_mean, image_std
            )
        return reorder_images(processed, grouped_index)


# Saved processors carry `auto_map`, so `AutoImageProcessor.from_pretrained(folder,
# trust_remote_code=True)` works without hf_covid installed.
ChestImageProcessor.register_for_auto_class("AutoImageProcessor")
