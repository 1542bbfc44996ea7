"""The tables of the public collections: reading them and naming what they list but lack.

Every collection ships a table or a list that names its images (ieee8023's ``metadata.csv``, RSNA's
``stage_2_train_labels.csv``, COVIDx's ``train.txt``). `read_csv_rows` reads a CSV and refuses one
that lacks a column the builder needs, naming the file and the column; `absent_files_note` is the
one sentence a build summary gives for the files a table lists but the folder does not hold, so
that no listed image is ever dropped silently. (A builder's own columns, RSNA's boxes or NIH's
findings, travel as ``PublicImage.extra`` with `CollectionScan.extra_features`.)
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["absent_files_note", "read_csv_rows"]


def read_csv_rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts of stripped strings (a BOM and blank keys ignored).

    Raises:
        FileNotFoundError: The file does not exist (naming it).
        ValueError: A required column is missing or renamed, naming the file, the missing
            column(s) and the columns found.
    """
    if not path.is_file():
        raise FileNotFoundError(f"'{path}' does not exist")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        found = [name for name in reader.fieldnames or () if name]
        missing = [name for name in required if name not in found]
        if missing:
            raise ValueError(f"'{path}' lacks the column(s) {missing} (found {found})")
        return [{key: (value or "").strip() for key, value in row.items() if key} for row in reader]


def absent_files_note(
    collection: str,
    listed_in: str,
    folder: str,
    names: Sequence[str],
    sources: Mapping[str, str] | None = None,
) -> str:
    """The summary sentence counting and naming the files a table lists but a folder lacks.

    Args:
        collection: The collection's title, first word of the sentence.
        listed_in: The table or list naming them (``"test.txt"``).
        folder: Where they were looked for (``"test/"``).
        names: The absent file names, all of them (the sentence lists every one).
        sources: File name -> the upstream source it comes from, to count them per source.
    """
    per_source = ""
    if sources:
        counts = Counter(sources.get(name, "") or "unknown" for name in names)
        per_source = " (" + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())) + ")"
    return (
        f"{collection}: {len(names)} file(s) listed in {listed_in} are absent from {folder}"
        f"{per_source} and were left out: {', '.join(sorted(names))}."
    )
