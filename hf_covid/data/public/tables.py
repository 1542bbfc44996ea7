"""The tables of the public collections: reading them, naming what they list but lack, and the
columns a builder adds from them.

Every collection ships a table or a list that names its images (ieee8023's ``metadata.csv``, RSNA's
``stage_2_train_labels.csv``, COVIDx's ``train.txt``). `read_csv_rows` reads a CSV and refuses one
that lacks a column the builder needs, naming the file and the column; `absent_files_note` is the
one sentence a build summary gives for the files a table lists but the folder does not hold, so
that no listed image is ever dropped silently; `with_extra_columns` adds a builder's own columns
(RSNA's boxes, COVIDx's data source) to the shared ones of `public_features`.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from datasets import DatasetDict, Features

__all__ = ["absent_files_note", "read_csv_rows", "with_extra_columns"]


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


def with_extra_columns(
    dataset: DatasetDict,
    values: Mapping[str, Mapping[str, object]],
    features: Mapping[str, object],
) -> DatasetDict:
    """``dataset`` with one more column per entry of ``features``, looked up by ``image_id``.

    Args:
        dataset: A builder's `DatasetDict` (its build summary stays in every split).
        values: Image id -> column name -> value, for every image of ``dataset``.
        features: Column name -> its `datasets` feature (``Value("int32")``, ``List(...)``).
    """
    extended = {}
    for name, split in dataset.items():
        image_ids = split["image_id"]
        for column, feature in Features(features).items():
            split = split.add_column(
                column, [values[image_id][column] for image_id in image_ids], feature=feature
            )
        extended[name] = split
    return DatasetDict(extended)
