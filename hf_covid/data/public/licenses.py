"""Licence gate for publishing compositions of public images, and licence counts for the card.

Licence strings are read as the collections write them (ieee8023's ``license`` column:
``"CC BY-NC-SA 4.0"``, ``"CC BY-NC-ND"``, ``"Apache 2.0"``, ``"listed as authorized for
everyone"``, blank). An image is *restricted* when its licence is non-commercial (NC), forbids
derivatives (ND), or is not stated or not recognised (nobody granted anything: treated as
restricted). A public push of a dataset holding restricted images is refused unless the caller
says explicitly that they checked (``allow_restricted=True``). This is a guard, not legal
advice: the uploader remains responsible for the terms of every source.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

__all__ = [
    "LICENSE_COLUMNS",
    "NIH_CHESTXRAY14_LICENSE",
    "RestrictedLicenseError",
    "check_publishable",
    "license_counts",
    "license_restriction",
]

logger = logging.getLogger(__name__)

LICENSE_COLUMNS: tuple[str, ...] = ("license", "xray_license", "ct_license")
"""Columns that hold an image's licence (single-image layout; X-ray + CT layout)."""
NOT_STATED = "not stated"
"""How `license_counts` names a blank licence."""

NIH_CHESTXRAY14_LICENSE = (
    "no restriction on use; cite Wang et al. (CVPR 2017) and acknowledge the NIH Clinical Center"
)
"""NIH's terms for ChestX-ray14, as its builder records them per image: open, with attribution."""

_OPEN_LICENSE = re.compile(r"^(cc[ -]?by(-sa)?( \d(\.\d)?)?|cc0( 1\.0)?|apache[ -]2(\.0)?|mit)$")
_OPEN_TERMS = frozenset({NIH_CHESTXRAY14_LICENSE.lower()})
"""Open terms that are no licence by name (attribution asked)."""


def license_restriction(license_text: str | None) -> str | None:
    """Why an image with this licence may not be published openly, or None when it may.

    Returns:
        ``"non-commercial (NC)"``, ``"no derivatives (ND)"``, ``"not stated (unknown)"``,
        ``"not recognised"``, or None for a recognised open licence (CC BY, CC BY-SA, CC0,
        Apache 2.0, MIT, NIH ChestX-ray14's unrestricted use with attribution).
    """
    text = (license_text or "").strip().lower()
    if not text:
        return "not stated (unknown)"
    words = set(re.split(r"[\s\-_/]+", text))
    if "nd" in words:
        return "no derivatives (ND)"
    if "nc" in words:
        return "non-commercial (NC)"
    if _OPEN_LICENSE.match(text) or text in _OPEN_TERMS:
        return None
    return "not recognised"


def _splits(dataset: Any) -> list[Any]:
    return list(dataset.values()) if hasattr(dataset, "values") else [dataset]


def license_counts(dataset: Any) -> dict[str, int]:
    """Images per licence, over every split and licence column (each image counted once).

    An image is identified by its id column (``image_id``, ``xray_id`` or ``ct_id``) and, where
    present, its collection (``source``), so a CT reused by label pairing counts once.

    Args:
        dataset: A `Dataset` or `DatasetDict` with licence columns (`LICENSE_COLUMNS`).

    Returns:
        ``{licence: count}``, largest first; a blank licence is `NOT_STATED`. Empty when the
        dataset has no licence column.
    """
    seen: dict[tuple[str, str, str], str] = {}
    for split in _splits(dataset):
        columns = split.column_names
        for license_column in LICENSE_COLUMNS:
            if license_column not in columns:
                continue
            prefix = license_column[: -len("license")]
            id_column = f"{prefix}id" if prefix else "image_id"
            source_column = f"{prefix}source" if prefix else "source"
            table = split.select_columns(
                [name for name in (license_column, id_column, source_column) if name in columns]
            ).to_dict()
            ids = table.get(id_column, [None] * split.num_rows)
            sources = table.get(source_column, [""] * split.num_rows)
            for row, (license_text, image_id, source) in enumerate(
                zip(table[license_column], ids, sources, strict=True)
            ):
                if image_id is None and license_text is None:
                    continue  # no image of this modality in the row
                key = (prefix, source or "", image_id if image_id is not None else f"row {row}")
                seen[key] = (license_text or "").strip() or NOT_STATED
    return dict(Counter(seen.values()).most_common())


class RestrictedLicenseError(PermissionError):
    """A public push was refused: the dataset holds images whose licence does not allow it.

    Attributes:
        restricted: ``{licence: image count}`` of the restricted images.
    """

    def __init__(self, restricted: dict[str, int]):
        self.restricted = restricted
        listed = ", ".join(f"{name!r}: {count}" for name, count in restricted.items())
        super().__init__(
            f"refusing a public push: {sum(restricted.values())} image(s) have a non-commercial, "
            f"no-derivatives, unstated or unrecognised licence ({listed}); push with "
            "private=True, remove those images, or pass allow_restricted=True after checking "
            "that every source allows this redistribution"
        )


def check_publishable(
    dataset: Any, *, private: bool, allow_restricted: bool = False
) -> dict[str, int]:
    """Refuse a public push of a dataset holding restricted images, unless told explicitly.

    Args:
        dataset: A `Dataset` or `DatasetDict`; one without licence columns passes (nothing is
            known to check).
        private: Whether the Hub repo is private (then restricted images are allowed, with a
            warning: a private repo is still a copy).
        allow_restricted: Publish publicly anyway (the caller has checked the terms).

    Returns:
        The restricted images per licence (empty when none).

    Raises:
        RestrictedLicenseError: Public push, restricted images, and not ``allow_restricted``.
    """
    restricted = {
        name: count
        for name, count in license_counts(dataset).items()
        if license_restriction("" if name == NOT_STATED else name) is not None
    }
    if not restricted:
        return restricted
    if not private and not allow_restricted:
        raise RestrictedLicenseError(restricted)
    logger.warning(
        "pushing %d image(s) with restricted licences (%s) to a %s repo%s",
        sum(restricted.values()),
        ", ".join(f"{name}: {count}" for name, count in restricted.items()),
        "private" if private else "public",
        "" if private else " (allow_restricted=True)",
    )
    return restricted
