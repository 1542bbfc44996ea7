"""Shared helpers for the inference and app tests: tiny random checkpoints, tiny test images and
a live app on a free loopback port."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from hf_covid.app import AppConfig, ChestApp, build_app
from hf_covid.benchmarks.app_latency import free_loopback_port
from hf_covid.models import (
    CNNLSTMConfig,
    CNNLSTMForImageClassification,
    DualChannelCNNConfig,
    DualChannelCNNForImageClassification,
    DualInputCNNConfig,
    DualInputCNNForImageClassification,
    LungUNetConfig,
    LungUNetForSegmentation,
    build_resnet_classifier,
)
from hf_covid.models.image_processing_chest import ChestImageProcessor

REPO_ROOT = Path(__file__).resolve().parents[1]
SPACE_DIR = REPO_ROOT / "spaces_app"
EXAMPLES_DIR = SPACE_DIR / "examples"
IMAGE_SIZE = 32
PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-31415926"


def build_tiny_checkpoints(root: Path) -> dict[str, str]:
    """Save a tiny randomly initialised checkpoint (model + processor) per served model."""
    models = {
        "dual_input": DualInputCNNForImageClassification(
            DualInputCNNConfig(widths=[4, 8], classifier_hidden_sizes=[8], fusion_hidden_size=8)
        ),
        "cnn_lstm": CNNLSTMForImageClassification(
            CNNLSTMConfig(
                widths=[4, 8], sequence_width=2, lstm_hidden_size=8, classifier_hidden_sizes=[8]
            )
        ),
        "dual_channel": DualChannelCNNForImageClassification(
            DualChannelCNNConfig(widths=[4, 8], classifier_hidden_sizes=[8])
        ),
        "resnet": build_resnet_classifier(
            None,
            config_overrides={
                "embedding_size": 8,
                "hidden_sizes": [8, 16],
                "depths": [1, 1],
                "layer_type": "basic",
            },
        ),
        "lung_unet": LungUNetForSegmentation(LungUNetConfig(widths=[4, 8], convs_per_block=1)),
    }
    paths = {}
    for key, model in models.items():
        folder = root / key
        model.save_pretrained(folder)
        channels = model.config.num_channels
        ChestImageProcessor(
            size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, num_channels=channels
        ).save_pretrained(folder)
        (folder / "README.md").write_text(
            f"---\nlicense: apache-2.0\ntags: [hf-covid]\n---\n# Tiny {key}\n\nModel card of {key}.\n"
        )
        paths[key] = str(folder)
    return paths


def phantom(size: tuple[int, int] = (48, 48), seed: int = 0) -> np.ndarray:
    """A (H, W) uint8 chest-like test image: two dark lungs in a brighter body, plus noise."""
    height, width = size
    rows, columns = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    lungs = ((columns - 0.3) ** 2 / 0.03 + (rows - 0.5) ** 2 / 0.12 < 1) | (
        (columns - 0.7) ** 2 / 0.03 + (rows - 0.5) ** 2 / 0.12 < 1
    )
    noise = np.random.default_rng(seed).normal(0, 12, size)
    return np.clip(180 - 120 * lungs + noise, 0, 255).astype(np.uint8)


def lung_mask(size: tuple[int, int]) -> np.ndarray:
    """A (H, W) uint8 0/255 mask of the phantom's lungs."""
    return (phantom(size) < 120).astype(np.uint8) * 255


def write_test_images(root: Path) -> dict[str, Path]:
    """Good and bad input files for the predictor and the app."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "xray": root / "xray.png",
        "xray_16bit": root / "xray_16bit.png",
        "ct": root / "ct.jpg",
        "mask": root / "mask.png",
        "mask_wrong_shape": root / "mask_wrong_shape.png",
        "huge": root / "huge.png",
        "corrupt": root / "Doe_Jane_corrupt.png",
        "not_an_image": root / "notes.txt",
        "dicom": root / "xray.dcm",
    }
    image = phantom((48, 48))
    Image.fromarray(image).save(files["xray"])
    Image.fromarray(image.astype(np.uint16) * 257).save(files["xray_16bit"])
    Image.fromarray(phantom((40, 56), seed=1)).save(files["ct"], quality=90)
    Image.fromarray(lung_mask((32, 32))).save(files["mask"])  # smaller, same aspect ratio
    Image.fromarray(lung_mask((48, 16))).save(files["mask_wrong_shape"])
    Image.new("L", (1200, 1000)).save(files["huge"])  # above the tests' max_image_pixels
    files["corrupt"].write_bytes(files["xray"].read_bytes()[:60])  # header, no pixel data
    files["not_an_image"].write_text("this is not an image\n")
    write_dicom(files["dicom"], image)
    return files


def write_dicom(path: Path, pixels: np.ndarray) -> None:
    """A minimal DICOM X-ray with patient data in its header."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.PatientName = PATIENT_NAME
    dataset.PatientID = PATIENT_ID
    dataset.PatientBirthDate = "19700101"
    dataset.Modality = "DX"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = 16
    dataset.BitsStored = 12
    dataset.HighBit = 11
    dataset.PixelRepresentation = 0
    dataset.PixelData = (pixels.astype(np.uint16) * 16).tobytes()
    dataset.save_as(path, enforce_file_format=True)


free_port = free_loopback_port


@contextlib.contextmanager
def running_app(checkpoints: dict[str, str], **config_fields) -> Iterator[tuple[ChestApp, str]]:
    """Build the app for ``checkpoints`` and serve it on a free loopback port; yields (app, url)."""
    app = build_app(AppConfig(checkpoints=checkpoints, **config_fields))
    url = app.launch("127.0.0.1", free_port())
    try:
        yield app, url
    finally:
        app.close()
