"""Which public images fill which Radiography class: named compositions and their class maps.

A source is ``"<collection>:<category>"`` (a `PublicCollection` name and one of its
categories, see `hf_covid.data.public.common.CATEGORY_DESCRIPTIONS`). A
`RadiographyComposition` names a class map and the age groups it keeps; a recipe chooses one by
name (``composition: adult_controls``) and may replace the sources of single classes
(``class_map``) or the age filter (``age_groups``).

* ``pediatric_controls``, the first study's composition: COVID from ieee8023 (adults, mostly
  figures from papers and web sites), Normal and Viral Pneumonia mostly from Kermany (children
  aged 1-5 from one hospital). Age and collection predict the label; no Lung_Opacity source.
* ``adult_controls``: adults only, in every collection; COVID from ieee8023 and COVID-CXNet (its
  @ChestImaging hospital films; the ``source`` and ``site`` columns keep the figure / film balance
  visible); Normal from NIH ChestX-ray14 ``No Finding`` and ieee8023 ``No Finding``;
  Lung_Opacity from NIH ``Pneumonia``, the nearest public source (stated); Viral Pneumonia from
  ieee8023's viral findings. Kermany's viral pneumonia only when asked, and then with
  ``age_groups: [adult, pediatric]`` (its images are children's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from hf_covid.models.labels import RADIOGRAPHY_LABELS

from .collections import PUBLIC_COLLECTIONS

__all__ = [
    "AGE_GROUPS",
    "DEFAULT_RADIOGRAPHY_COMPOSITION",
    "RADIOGRAPHY_COMPOSITIONS",
    "RadiographyComposition",
    "check_age_groups",
    "get_radiography_composition",
    "parse_source",
    "resolve_radiography_class_map",
]

AGE_GROUPS = ("adult", "pediatric", "unknown")
"""The values an age filter may keep: the ``age_group`` column's, and ``unknown`` for ""."""


@dataclass(frozen=True)
class RadiographyComposition:
    """A named choice of public sources for the Radiography classes.

    Attributes:
        name: Recipe value of ``composition``.
        description: One sentence for summaries and cards.
        class_map: Radiography class -> ``"<collection>:<category>"`` sources (empty: no source).
        age_groups: The age groups (`AGE_GROUPS`) kept in every collection; None keeps every
            image.
        notes: Caveats stated in the build summary and the model card.
    """

    name: str
    description: str
    class_map: Mapping[str, tuple[str, ...]]
    age_groups: tuple[str, ...] | None = None
    notes: tuple[str, ...] = ()


LUNG_OPACITY_NOTE = (
    "Lung_Opacity <- NIH ChestX-ray14 adult 'Pneumonia': the nearest public source (the "
    "COVID-19 Radiography Database took its Lung_Opacity images from the RSNA Pneumonia "
    "Detection Challenge, itself drawn from NIH ChestX-ray14); NIH's label is text-mined from "
    "the reports and of unstated cause, not a read opacity."
)

RADIOGRAPHY_COMPOSITIONS: Mapping[str, RadiographyComposition] = MappingProxyType(
    {
        "pediatric_controls": RadiographyComposition(
            name="pediatric_controls",
            description="COVID from ieee8023 (adults, figures from papers and web sites); Normal "
            "and Viral Pneumonia mostly from Kermany (children aged 1-5, one hospital)",
            class_map=MappingProxyType(
                {
                    "COVID": ("ieee8023:covid",),
                    "Lung_Opacity": (),
                    "Normal": ("kermany:normal", "ieee8023:normal"),
                    "Viral Pneumonia": ("kermany:viral", "ieee8023:viral"),
                }
            ),
            notes=(
                "Every COVID image is an adult's from ieee8023 and nearly every control a "
                "child's from Kermany: age and collection predict the label.",
            ),
        ),
        "adult_controls": RadiographyComposition(
            name="adult_controls",
            description="adults only: COVID from ieee8023 figures and COVID-CXNet hospital "
            "films; Normal and Lung_Opacity from NIH ChestX-ray14; Viral Pneumonia from ieee8023",
            class_map=MappingProxyType(
                {
                    "COVID": ("ieee8023:covid", "covid_cxnet:covid"),
                    "Lung_Opacity": ("nih_chestxray14:pneumonia",),
                    "Normal": ("nih_chestxray14:normal", "ieee8023:normal"),
                    "Viral Pneumonia": ("ieee8023:viral",),
                }
            ),
            age_groups=("adult",),
            notes=(
                LUNG_OPACITY_NOTE,
                "Adults only (age 18 or over, in every collection); images of unknown age are "
                "left out and counted.",
                "COVID images are figures from papers and web sites (ieee8023) or screen "
                "captures of hospital films (COVID-CXNet); the controls are NIH hospital films: "
                "see the source x age group x view table.",
            ),
        ),
    }
)
"""Named Radiography compositions, by the recipe value of ``composition``."""

DEFAULT_RADIOGRAPHY_COMPOSITION = "pediatric_controls"
"""The composition of `compose_radiography` when none is named (the first study's)."""


def get_radiography_composition(name: str) -> RadiographyComposition:
    """The composition ``name``.

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    try:
        return RADIOGRAPHY_COMPOSITIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown composition {name!r}; expected one of {', '.join(RADIOGRAPHY_COMPOSITIONS)}"
        ) from None


def parse_source(reference: str) -> tuple[str, str]:
    """``"<collection>:<category>"`` -> (collection, category).

    Raises:
        ValueError: an unknown collection or category; the message lists the known sources.
    """
    collection, _, category = reference.partition(":")
    record = PUBLIC_COLLECTIONS.get(collection)
    if record is None or category not in record.categories:
        known = [f"{r.name}:{c}" for r in PUBLIC_COLLECTIONS.values() for c in r.categories]
        raise ValueError(f"unknown source {reference!r} in class_map; expected one of {known}")
    return collection, category


def resolve_radiography_class_map(
    classes: Sequence[str] | None = None,
    class_map: Mapping[str, Sequence[str]] | None = None,
    composition: str = DEFAULT_RADIOGRAPHY_COMPOSITION,
) -> dict[str, tuple[str, ...]]:
    """Radiography class -> sources, for the classes that will be filled.

    Args:
        classes: Classes wanted (default: every class that has a source).
        class_map: Sources per class, replacing the composition's entry for each class it names
            (``{"Lung_Opacity": ["ieee8023:bacterial"]}``).
        composition: The named composition whose class map is the starting point.

    Returns:
        The selected classes, in `RADIOGRAPHY_LABELS` order, each with its sources.

    Raises:
        ValueError: An unknown composition, class or source, a source given to two classes, or a
            requested class without a source (naming how to map one).
    """
    base = get_radiography_composition(composition).class_map
    merged = {name: tuple(sources) for name, sources in base.items()}
    for name, sources in (class_map or {}).items():
        if name not in merged:
            raise ValueError(f"class_map: {name!r} is not one of {list(RADIOGRAPHY_LABELS)}")
        merged[name] = (sources,) if isinstance(sources, str) else tuple(sources)
    owner: dict[str, str] = {}
    for name, sources in merged.items():
        for source in sources:
            parse_source(source)
            if owner.setdefault(source, name) != name:
                raise ValueError(
                    f"class_map: {source!r} is mapped to both {owner[source]!r} and {name!r}"
                )
    if classes is None:
        selected = [name for name in RADIOGRAPHY_LABELS if merged[name]]
    else:
        unknown = [name for name in classes if name not in merged]
        if unknown or not classes:
            raise ValueError(
                f"classes must be a non-empty subset of {list(RADIOGRAPHY_LABELS)}, got {list(classes)}"
            )
        empty = [name for name in classes if not merged[name]]
        if empty:
            raise ValueError(
                f"class(es) {empty} have no source in the {composition!r} composition; map one "
                f"explicitly, e.g. class_map={{{empty[0]!r}: ['ieee8023:bacterial']}}, choose "
                "composition: adult_controls, or leave them out of classes"
            )
        selected = [name for name in RADIOGRAPHY_LABELS if name in set(classes)]
    return {name: merged[name] for name in selected}


def check_age_groups(age_groups: Sequence[str]) -> tuple[str, ...]:
    """``age_groups`` as a tuple, checked against `AGE_GROUPS`.

    Raises:
        ValueError: an empty list or an unknown age group.
    """
    groups = (age_groups,) if isinstance(age_groups, str) else tuple(age_groups)
    unknown = [group for group in groups if group not in AGE_GROUPS]
    if unknown or not groups:
        raise ValueError(
            f"age_groups must be a non-empty subset of {list(AGE_GROUPS)}, got {list(groups)}"
        )
    return groups
