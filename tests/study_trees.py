"""Tiny collections in the upstream layouts for the study's tests: every collection the ablation
reads (ieee8023 with lung masks, Kermany, NIH ChestX-ray14, COVID-CXNet), big enough for every
split of every configuration to hold each class; and tiny checkpoints saved as the study would."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from chest_trees import random_image
from PIL import Image
from test_adult_controls import CXNET_COLUMNS, NIH_COLUMNS

from hf_covid.models.image_processing_chest import ChestImageProcessor
from hf_covid.registry import get_model_family
from hf_covid.study.probe_data import MODELS_DIR

SIZE = 32
SITES = ("https://radiopaedia.org/cases/{}", "https://www.sirm.org/covid-{}")
COMPOSED_CLASSES = ("COVID", "Normal", "Viral Pneumonia")
"""The classes of the first study's composition (no Lung_Opacity source)."""
IEEE_COLUMNS = ["patientid", "age", "finding", "view", "modality", "folder", "filename", "url"]


def lung_rectangle(size: int = 40) -> np.ndarray:
    """A lung mask: one rectangle over most of the image."""
    mask = np.zeros((size, size), np.uint8)
    mask[6:34, 5:35] = 255
    return mask


def _save(path: Path, pixels: np.ndarray, image_format: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=image_format)


def _write_ieee8023(root: Path, rng: np.random.Generator) -> None:
    """COVID from two sites (3 in 4 with lung masks), adult normals and viral pneumonia."""
    ieee = root / "ieee8023"
    rows = []
    for patient in range(1, 25):
        name = f"covid-{patient}.png"
        _save(ieee / "images" / name, random_image(rng))
        if patient % 4:
            _save(ieee / "masks" / name, lung_rectangle())
        rows.append((patient, "50", "COVID-19", name, SITES[patient % 2].format(patient)))
    for patient, finding in [
        *((p, "No Finding") for p in range(30, 36)),
        *((p, "SARS") for p in range(40, 48)),
    ]:
        name = f"{finding.split()[0].lower()}-{patient}.png"
        _save(ieee / "images" / name, random_image(rng))
        rows.append((patient, "45", finding, name, "https://eurorad.org/x"))
    with (ieee / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*IEEE_COLUMNS, "license"])
        writer.writeheader()
        for patient, age, finding, name, url in rows:
            values = [patient, age, finding, "PA", "X-ray", "images", name, url]
            writer.writerow(dict(zip(IEEE_COLUMNS, values, strict=True)) | {"license": "CC BY 4.0"})


def _write_kermany(root: Path, rng: np.random.Generator) -> None:
    train = root / "kermany" / "chest_xray" / "train"
    for patient in range(1, 17):
        _save(train / "NORMAL" / f"IM-{patient:04d}-0001.jpeg", random_image(rng), "JPEG")
        _save(
            train / "PNEUMONIA" / f"person{patient}_virus_{patient}.jpeg", random_image(rng), "JPEG"
        )


def _write_nih(root: Path, rng: np.random.Generator) -> None:
    nih = root / "nih_chestxray14"
    rows = [
        *((p, "No Finding", "50", "PA" if p % 2 else "AP") for p in range(1, 21)),
        *((p, "Pneumonia|Infiltration", "60", "AP" if p % 2 else "PA") for p in range(21, 41)),
        (41, "No Finding", "9", "PA"),
    ]
    nih.mkdir(parents=True)
    with (nih / "Data_Entry_2017_v2020.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(NIH_COLUMNS)
        for patient, findings, age, view in rows:
            name = f"{patient:08d}_000.png"
            _save(nih / "images" / name, random_image(rng))
            writer.writerow([name, findings, 0, patient, age, "F", view, 2500, 2048, 0.168, 0.168])


def _write_cxnet(root: Path, rng: np.random.Generator) -> None:
    cxnet = root / "covid_cxnet"
    cxnet.mkdir(parents=True)
    with (cxnet / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CXNET_COLUMNS)
        writer.writeheader()
        for patient in range(10):
            for film in range(2):
                name = f"{patient * 2 + film + 260}.jpg"
                _save(cxnet / "chest_xray_images" / "covid19" / name, random_image(rng), "JPEG")
                writer.writerow(
                    {
                        "filename": name,
                        "patient_id": patient,
                        "sex": "male",
                        "age": "55",
                        "view": "",
                        "label": "COVID-19",
                        "pcr_test": "positive",
                        "url": "https://twitter.com/ChestImaging/status/1",
                    }
                )


def write_study_collections(root: Path, seed: int = 0) -> Path:
    """ieee8023, Kermany, NIH ChestX-ray14 and COVID-CXNet side by side."""
    rng = np.random.default_rng(seed)
    _write_ieee8023(root, rng)
    _write_kermany(root, rng)
    _write_nih(root, rng)
    _write_cxnet(root, rng)
    return root


def save_tiny_study_model(
    study_dir: Path, key: str, labels=None, folder: Path | None = None
) -> Path:
    """A randomly initialised tiny model of family ``key`` saved as a study checkpoint."""
    family = get_model_family(key)
    folder = folder or study_dir / MODELS_DIR / key
    family.tiny_model(labels).save_pretrained(folder)
    processor = ChestImageProcessor(
        size={"height": SIZE, "width": SIZE}, **dict(family.processor_options)
    )
    processor.save_pretrained(folder)
    return folder
