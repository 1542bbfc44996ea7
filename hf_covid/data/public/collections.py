"""The public collections hf_covid reads: one `PublicCollection` record each, in one table.

Compositions (`hf_covid.data.public.compose`), `find_collections`, ``hf-covid prepare --list``
and the downloader learn what a collection is from its record (name, title, licence, categories,
folder names, scan and builder). A new collection is its builder module plus one entry here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from . import covid_ct, covid_cxnet, covidx, ieee8023, kermany, nih_chestxray14, rsna
from .records import PublicCollection

__all__ = ["PUBLIC_COLLECTIONS", "find_collections", "get_collection"]

PUBLIC_COLLECTIONS: Mapping[str, PublicCollection] = MappingProxyType(
    {
        record.name: record
        for record in (
            ieee8023.COLLECTION,
            kermany.COLLECTION,
            covid_ct.COLLECTION,
            nih_chestxray14.COLLECTION,
            covid_cxnet.COLLECTION,
            rsna.COLLECTION,
            covidx.COLLECTION,
        )
    }
)
"""Collection name -> its record, in the order listings show them."""


def get_collection(name: str) -> PublicCollection:
    """The record of the collection ``name``.

    Raises:
        KeyError: an unknown name; the message lists the known ones.
    """
    try:
        return PUBLIC_COLLECTIONS[name]
    except KeyError:
        raise KeyError(
            f"unknown public collection {name!r}; known: {', '.join(PUBLIC_COLLECTIONS)}"
        ) from None


def find_collections(root: str | Path) -> dict[str, Path]:
    """The public collections found directly below ``root`` (a collections root).

    A collections root holds the upstream folders side by side (``ieee8023/``,
    ``kermany/chest_xray/``, ``covid_ct/``, ...); the folder names each collection accepts are in
    its record's ``folder_names``. ``root`` itself being one collection does not count.

    Returns:
        Collection name -> its folder, for those found; empty when ``root`` is no collections
        root.
    """
    found = {}
    for name, record in PUBLIC_COLLECTIONS.items():
        folder = record.locate(root)
        if folder is not None:
            found[name] = folder
    return found
