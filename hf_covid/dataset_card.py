"""Dataset cards: rendered offline from a built ``DatasetDict`` and ``model_cards/``.

The card describes the features, the splits (rows and class counts), the X-ray/CT pairing, the
deduplication, the source collections, the licences of the images with their counts (for the
public-collection compositions, which carry a licence per image) and the data's known problems.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from hf_covid.card_data import license_rows
from hf_covid.data.public.licenses import license_counts
from hf_covid.data.summary import read_build_summary
from hf_covid.model_card import card_template
from hf_covid.registry import DATASET_KINDS

__all__ = ["license_section", "render_dataset_card"]

_SYNTHETIC_WORDS = ("synthetic", "phantom")

# An absolute POSIX or Windows path (not the path part of a URL).
_LOCAL_PATH = re.compile(r"(?<![\w:/.])/[^\s,;:]+|\b[A-Za-z]:\\[^\s,;]+")

_LICENSE_HEADING = "## License"


def license_section(counts: Mapping[str, int]) -> str:
    """Markdown of the images' licences: one row per licence with its image count and whether it
    allows an open redistribution (:func:`~hf_covid.data.public.licenses.license_restriction`)."""
    rows = [
        f"| {name} | {count} | {restriction} |" for name, count, restriction in license_rows(counts)
    ]
    return "\n".join(
        [
            "## Licences of the images",
            "",
            f"Each image keeps the licence of its collection ({sum(counts.values())} images):",
            "",
            "| Licence | Images | Restriction |",
            "| --- | --- | --- |",
            *rows,
            "",
            "A public copy of images with a restriction needs the right to redistribute them; "
            "`hf_covid.hub.push_dataset` refuses a public push of such images unless told "
            "`allow_restricted=True`.",
            "",
            "",
        ]
    )


def _feature_description(feature: Any) -> str:
    name = type(feature).__name__
    if name == "ClassLabel":
        return "ClassLabel(" + ", ".join(feature.names) + ")"
    if name == "Value":
        return feature.dtype
    return name


def render_dataset_card(
    dataset_dict: Mapping[str, Any],
    *,
    repo_id: str | None = None,
    pretty_name: str | None = None,
    synthetic: bool | None = None,
) -> DatasetCard:
    """Render the dataset card of a built ``DatasetDict``, offline.

    Describes the features, the splits (rows and class counts), the X-ray/CT pairing, the
    deduplication, the sources, the licences with their image counts (where the dataset has
    licence columns) and the licence caveats. The dataset (COVID-19 Radiography Database or
    Extensive COVID-19 X-Ray and CT) is recognised from the columns.

    Args:
        dataset_dict: a ``datasets.DatasetDict`` from ``hf_covid.data``.
        repo_id: the Hub repo the card is for (used in the code example).
        pretty_name: display name; defaults to the source dataset's name.
        synthetic: whether the images are synthetic phantoms; by default, what the builders'
            summary stored with the dataset says, else whether its ``source`` column says so.
    """
    if not dataset_dict:
        raise ValueError("cannot write a dataset card for an empty DatasetDict")
    first = next(iter(dataset_dict.values()))
    features = first.features
    columns = list(features)
    kind = "xray_ct" if {"xray", "ct"} <= set(columns) else "radiography"
    source = DATASET_KINDS[kind]
    summary = read_build_summary(dataset_dict)
    if summary is not None:
        description = summary.describe()
    else:  # built elsewhere: its free-text description may name a local folder
        description = _LOCAL_PATH.sub("<local folder>", (first.info.description or "").strip())
    label_feature = features.get("label")
    label_names = list(getattr(label_feature, "names", []) or [])
    splits = []
    for name, split in dataset_dict.items():
        counts = Counter(split["label"]) if "label" in columns else Counter()
        splits.append(
            {
                "name": name,
                "rows": split.num_rows,
                "counts": [counts.get(index, 0) for index in range(len(label_names))],
            }
        )
    pairings: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    for split in dataset_dict.values():
        if "pairing" in columns:
            pairings.update(value for value in split["pairing"] if value)
        if "source" in columns:
            sources.update(value or "(unknown)" for value in split["source"])
    if synthetic is None:
        synthetic = bool(summary and summary.synthetic) or any(
            word in text.lower() for text in (description, *sources) for word in _SYNTHETIC_WORDS
        )
    total_rows = sum(split["rows"] for split in splits)
    size_category = next(
        label
        for limit, label in (
            (1_000, "n<1K"),
            (10_000, "1K<n<10K"),
            (100_000, "10K<n<100K"),
            (math.inf, "100K<n<1M"),
        )
        if total_rows < limit
    )
    name = pretty_name or (f"{source.name} (synthetic phantoms)" if synthetic else source.name)
    card_data = DatasetCardData(
        pretty_name=name,
        license="apache-2.0" if synthetic else "other",
        task_categories=["image-classification"],
        size_categories=size_category,
        tags=["medical-imaging", "chest-x-ray", "covid-19", "hf_covid"]
        + (["ct"] if kind == "xray_ct" else [])
        + (["synthetic"] if synthetic else []),
    )
    if not synthetic:
        card_data["license_name"] = "see-sources"
        card_data["license_link"] = source.url
    card = DatasetCard.from_template(
        card_data,
        template_path=card_template("dataset_card_template.md"),
        title=name,
        repo_id=repo_id or "<user>/<dataset>",
        kind=kind,
        source=source,
        synthetic=synthetic,
        description=description,
        features=[(column, _feature_description(feature)) for column, feature in features.items()],
        label_names=label_names,
        splits=splits,
        total_rows=total_rows,
        total_counts=[
            sum(column) for column in zip(*(split["counts"] for split in splits), strict=True)
        ],
        pairings=dict(pairings),
        sources=sources.most_common(10),
        num_sources=len(sources),
    )
    licenses = license_counts(dataset_dict)
    if licenses:
        # The licence table goes right before the card's licence terms.
        head, heading, tail = card.text.partition(f"\n{_LICENSE_HEADING}\n")
        card.text = (
            f"{head}\n{license_section(licenses)}{heading.lstrip()}{tail}"
            if heading
            else f"{card.text}\n{license_section(licenses)}"
        )
    return card
