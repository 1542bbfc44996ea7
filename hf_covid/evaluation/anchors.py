"""Published numbers that results are set beside: what such work reports, not targets.

Each anchor names the dataset kind and task of the models it applies to
(:class:`hf_covid.registry.ModelFamily` fields) and, where it was measured on one public data
set's own split, that data set (``data``: the build summary ``kind`` of the collection, e.g.
``"covidx"``), so that an evaluation on that data reports beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PUBLISHED_ANCHORS", "published_anchor"]

PUBLISHED_ANCHORS: Mapping[str, Mapping[str, Any]] = {
    "radiography_3_class": {
        "dataset_kind": "radiography",
        "task": "classification",
        "metric": "accuracy",
        "value": 0.979,
        "what": "3-class accuracy (COVID-19 / viral pneumonia / normal)",
        "reference": "Chowdhury et al. 2020, IEEE Access 8:132665 (COVID-19 Radiography "
        "Database: adult COVID-19 images against pediatric Kermany controls)",
    },
    "covid_ct": {
        "dataset_kind": "xray_ct",
        "task": "classification",
        "metric": "f1 / roc_auc (CT)",
        "value": {"f1": 0.85, "roc_auc": 0.94},
        "what": "COVID-CT slices, F1 0.85 and AUC 0.94",
        "reference": "Yang et al. 2020, COVID-CT-Dataset, arXiv:2003.13865",
    },
    "covidx_3_class": {
        "dataset_kind": "radiography",
        "task": "classification",
        "metric": "accuracy / covid_sensitivity",
        "value": {"accuracy": 0.933, "covid_sensitivity": 0.91},
        "what": "COVIDx test split (COVIDx3: 100 normal, 100 pneumonia, 100 COVID-19), "
        "COVIDNet-CXR3-B: 3-class accuracy 93.3%, COVID-19 sensitivity 91.0%",
        "reference": "Wang, Lin and Wong 2020, COVID-Net, Scientific Reports 10:19549 "
        "(github.com/lindawangg/COVID-Net, README results and docs/models.md)",
        "data": "covidx",
    },
    "lung_segmentation": {
        "dataset_kind": "radiography",
        "task": "segmentation",
        "metric": "dice",
        "value": 0.969,
        "what": "lung segmentation Dice on their masks",
        "reference": "Rahman et al. 2021, Computers in Biology and Medicine 132:104319",
    },
}
"""The published numbers, by name."""


def published_anchor(dataset_kind: str, task: str, data: str | None = None) -> Mapping | None:
    """The anchor for models of ``dataset_kind`` and ``task`` evaluated on ``data`` (a build
    summary kind): the one measured on that data set if there is one, else the first without a
    ``data`` of its own; None when none applies."""
    matching = [
        anchor
        for anchor in PUBLISHED_ANCHORS.values()
        if (anchor["dataset_kind"], anchor["task"]) == (dataset_kind, task)
    ]
    own = [anchor for anchor in matching if data is not None and anchor.get("data") == data]
    general = [anchor for anchor in matching if "data" not in anchor]
    return (own or general or [None])[0]
