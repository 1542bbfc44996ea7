"""The training-data part of a model card: what a composition of the public collections holds,
and the licence the card declares for the weights.

A checkpoint trained on a composition (its :class:`~hf_covid.checkpoints.DatasetRecord` counts
images of the collections of :data:`~hf_covid.data.public.collections.PUBLIC_COLLECTIONS`) is
described by those collections, with their image counts, publishers' pages and licences, the
class x source x age group x view table and the builder's notes, never as the COVID-19
Radiography Database. The licence of its weights follows from the images' licences
(:func:`card_license`); the code stays Apache-2.0.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hf_covid.checkpoints import DatasetRecord
from hf_covid.data.public.collections import PUBLIC_COLLECTIONS
from hf_covid.data.public.licenses import NOT_STATED, license_restriction

__all__ = [
    "CODE_LICENSE",
    "HUB_CC_LICENSES",
    "OTHER_LICENSE_NAME",
    "CardLicense",
    "card_license",
    "is_public_composition",
    "license_rows",
    "training_data_context",
]

CODE_LICENSE = "apache-2.0"
"""The Hub licence id of hf_covid's code, and of weights trained on openly licensed images."""
OTHER_LICENSE_NAME = "training-data-licenses"
"""``license_name`` of a card whose ``license`` is ``other``: the images' licences decide."""
HUB_CC_LICENSES = frozenset(
    (
        "cc-by-2.0",
        "cc-by-2.5",
        "cc-by-3.0",
        "cc-by-4.0",
        "cc-by-sa-3.0",
        "cc-by-sa-4.0",
        "cc-by-nc-2.0",
        "cc-by-nc-3.0",
        "cc-by-nc-4.0",
        "cc-by-nd-4.0",
        "cc-by-nc-nd-3.0",
        "cc-by-nc-nd-4.0",
        "cc-by-nc-sa-2.0",
        "cc-by-nc-sa-3.0",
        "cc-by-nc-sa-4.0",
    )
)
"""The Creative Commons licences that the Hub knows by id (https://hf.co/docs/hub/repositories-licenses)."""

_CREATIVE_COMMONS = re.compile(
    r"^cc[ -]?by(?P<terms>(?:[ -](?:nc|nd|sa))*)(?:[ -](?P<version>\d\.\d))?$"
)
_TERM_ORDER = ("nc", "nd", "sa")


def license_rows(counts: Mapping[str, int]) -> list[tuple[str, int, str]]:
    """``(licence, images, restriction or "open licence")`` per licence, as the cards list them
    (:func:`~hf_covid.data.public.licenses.license_restriction`)."""
    return [(name, count, _restriction(name) or "open licence") for name, count in counts.items()]


def _restriction(name: str) -> str | None:
    return license_restriction("" if name == NOT_STATED else name)


def _terms(name: str) -> frozenset[str] | None:
    """The restrictions a licence adds to attribution (``nc``, ``nd``, ``sa``): empty for an
    open licence that is no Creative Commons one (Apache, MIT, CC0, NIH's terms), None for a
    restricted licence that is no Creative Commons one (unstated, unrecognised)."""
    match = _CREATIVE_COMMONS.match(name.strip().lower())
    if match is not None:
        return frozenset(re.split(r"[ -]", match["terms"].strip(" -"))) - {""}
    return frozenset() if _restriction(name) is None else None


def _hub_id(name: str) -> str | None:
    """The Hub id of a Creative Commons licence that states its version, else None."""
    match = _CREATIVE_COMMONS.match(name.strip().lower())
    if match is None or match["version"] is None:
        return None
    terms = _terms(name) or frozenset()
    hub_id = "-".join(["cc-by", *(term for term in _TERM_ORDER if term in terms)])
    hub_id += f"-{match['version']}"
    return hub_id if hub_id in HUB_CC_LICENSES else None


def _covers(stronger: frozenset[str], weaker: frozenset[str]) -> bool:
    """Whether terms ``stronger`` restrict at least what ``weaker`` restrict (no derivatives at
    all covers share-alike)."""
    return all(term in stronger or (term == "sa" and "nd" in stronger) for term in weaker)


@dataclass(frozen=True)
class CardLicense:
    """The licence a model card declares for the weights.

    Attributes:
        license: The Hub licence id (``apache-2.0``, ``cc-by-nc-sa-4.0``, ..., or ``other``).
        name: ``license_name`` when ``license`` is ``other``, else None.
        reason: Why, in one sentence for the card.
        restricted: Images per licence that is not open (NC, ND, unstated, unrecognised).
    """

    license: str
    name: str | None
    reason: str
    restricted: dict[str, int] = field(default_factory=dict)


def card_license(licenses: Mapping[str, int]) -> CardLicense:
    """The licence of weights trained on images with these licences.

    Every image openly licensed (or no licence recorded: the phantoms, a dataset whose builder
    knows none): the code's licence, :data:`CODE_LICENSE`. Otherwise the most restrictive of the
    images' licences, when one restricts at least what every other does and is a Creative
    Commons licence with a stated version that the Hub knows (``cc-by-nc-sa-4.0``, ...); else
    ``other`` (:data:`OTHER_LICENSE_NAME`): an unstated or unrecognised licence grants nothing,
    and licences that none covers (ND and SA, say) have no single id.

    Args:
        licenses: Images per licence (:attr:`~hf_covid.checkpoints.DatasetRecord.licenses`).
    """
    restricted = {name: count for name, count in licenses.items() if _restriction(name)}
    if not restricted:
        reason = (
            "every training image has an open licence"
            if licenses
            else "the training data record names no image licence"
        )
        return CardLicense(CODE_LICENSE, None, reason)
    terms = {name: _terms(name) for name in licenses}
    unknown = sorted(name for name, value in terms.items() if value is None)
    if unknown:
        count = sum(licenses[name] for name in unknown)
        reason = (
            f"{count} training images have a licence that is not stated or not recognised "
            f"({', '.join(unknown)}): nobody granted a right to use them"
        )
        return CardLicense("other", OTHER_LICENSE_NAME, reason, restricted)
    covering = [
        name
        for name in sorted(restricted, key=lambda name: -restricted[name])
        if _hub_id(name) and all(_covers(terms[name], other) for other in terms.values())
    ]
    if covering:
        chosen = covering[0]
        reason = f"the most restrictive licence of the training images is {chosen}"
        return CardLicense(_hub_id(chosen), None, reason, restricted)
    reason = (
        "no one licence of the training images restricts at least what every other does and "
        "has a Hub licence id"
    )
    return CardLicense("other", OTHER_LICENSE_NAME, reason, restricted)


def is_public_composition(record: DatasetRecord | None) -> bool:
    """Whether a data record describes images of the public collections (a composition, or one
    collection alone) rather than the dataset of its layout: its ``sources`` name collections of
    :data:`~hf_covid.data.public.collections.PUBLIC_COLLECTIONS`."""
    return (
        record is not None
        and not record.synthetic
        and any(source in PUBLIC_COLLECTIONS for source in record.sources)
    )


def _shares(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{name} {count / total:.0%}" for name, count in ranked)


def _strata_findings(strata: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per class, where its images come from (source, age group, view shares)."""
    by_class: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for row in strata:
        for key in ("source", "age_group", "view"):
            by_class[str(row.get("class"))][key][str(row.get(key) or "unknown")] += int(
                row.get("images", 0)
            )
    return [
        f"`{name}` ({sum(parts['source'].values())} images): {_shares(parts['source'])}; "
        f"{_shares(parts['age_group'])}; views {_shares(parts['view'])}"
        for name, parts in by_class.items()
    ]


def _collection_rows(sources: Mapping[str, int]) -> list[dict[str, Any]]:
    rows = []
    for name, count in sorted(sources.items(), key=lambda item: (-item[1], item[0])):
        record = PUBLIC_COLLECTIONS.get(name)
        rows.append(
            {
                "name": name,
                "title": record.title if record else name,
                "url": record.url if record else None,
                "license": record.license if record else None,
                "images": count,
            }
        )
    return rows


def _lung_crop(record: DatasetRecord | None) -> dict[str, Any] | None:
    crop = record.lung_crop if record is not None else None
    if not isinstance(crop, Mapping):
        return None
    uncropped = {
        split: dict(statuses)
        for split, statuses in (crop.get("uncropped") or {}).items()
        if statuses and sum(statuses.values())
    }
    return {
        "segmenter": crop.get("segmenter"),
        "margin": crop.get("margin"),
        "images": dict(crop.get("images") or {}),
        "uncropped": uncropped,
        "uncropped_total": sum(sum(statuses.values()) for statuses in uncropped.values()),
    }


def training_data_context(record: DatasetRecord | None) -> dict[str, Any]:
    """What the card template says about the training data besides its name and splits.

    Returns:
        ``composition`` (bool, :func:`is_public_composition`), ``collections`` (name, title,
        url, publisher's licence, images), ``license_rows`` (:func:`license_rows`), ``strata``
        (the record's rows), ``strata_findings`` (per class, its sources, age groups and views
        as shares), ``notes`` and ``lung_crop`` (segmenter, margin, images and uncropped images
        per split, or None).
    """
    composition = is_public_composition(record)
    return {
        "composition": composition,
        "collections": _collection_rows(record.sources) if composition else [],
        "license_rows": license_rows(record.licenses) if record is not None else [],
        "strata": list(record.strata) if record is not None else [],
        "strata_findings": _strata_findings(record.strata) if record is not None else [],
        "notes": list(record.notes) if record is not None else [],
        "lung_crop": _lung_crop(record),
    }
