"""Data out: a built or composed ``DatasetDict`` as local Parquet, or as an ``imagefolder`` tree.

Two layouts, both read back by ``datasets.load_dataset`` with the features of the original:

- :func:`write_parquet`: ``<output>/data/<split>-00000-of-00001.parquet``, images embedded (the
  layout ``push_to_hub`` uploads), so the folder is self-contained::

      load_dataset(str(output))                              # same features, ClassLabel included

- :func:`write_imagefolder`: ``<output>/<split>/<column>/<row>_<file name>`` plus one
  ``<output>/<split>/metadata.jsonl`` whose ``file_name`` (the ``image`` or first image column)
  and ``<column>_file_name`` keys name each row's files, so masks and CTs load as columns of their
  row, never as samples of their own::

      load_dataset("imagefolder", data_dir=str(output), features=dataset["train"].features)

  Without ``features=`` the labels load as class-name strings (metadata has no ClassLabel).

Both write only under ``output``, which must be a new (or empty) folder outside the data folder
the images come from: the user's data is never written to. The build summary, when the dataset
has one, is written beside the data as ``build_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Image, load_from_disk
from datasets.table import embed_table_storage

from .builders import DATASET_BUILDERS
from .summary import read_build_summary

__all__ = [
    "BUILD_SUMMARY_FILE",
    "METADATA_FILE",
    "image_columns",
    "main",
    "write_imagefolder",
    "write_parquet",
]

BUILD_SUMMARY_FILE = "build_summary.json"
"""The dataset's build summary (:class:`~hf_covid.data.summary.DatasetBuildSummary`) as JSON."""

METADATA_FILE = "metadata.jsonl"
"""Per-split metadata of the ``imagefolder`` layout."""

_PARQUET_DIR = "data"


def image_columns(dataset: Dataset) -> list[str]:
    """The columns of ``dataset`` that hold images, in column order."""
    return [name for name, feature in dataset.features.items() if isinstance(feature, Image)]


def _undecoded(split: Dataset) -> Dataset:
    """``split`` with its image columns as ``{"path", "bytes"}`` (nothing decoded)."""
    features = split.features.copy()
    for name in image_columns(split):
        features[name] = Image(decode=False)
    return split.cast(features)


def _source_folders(dataset: DatasetDict) -> set[Path]:
    """The folders the dataset's image files lie in (images held as bytes have none)."""
    folders = set()
    for split in dataset.values():
        raw = _undecoded(split)
        for name in image_columns(split):
            for value in raw[name]:
                if value and value.get("path") and not value.get("bytes"):
                    folders.add(Path(value["path"]).resolve().parent)
    return folders


def _prepare_output(dataset: DatasetDict, output_dir: str | Path) -> Path:
    """Check that ``output_dir`` is new or empty and outside every source folder; create it."""
    output = Path(output_dir).expanduser().resolve()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FileExistsError(
            f"{output}: the output folder exists and is not empty; choose a new one"
        )
    sources = _source_folders(dataset)
    if sources:
        data_root = Path(os.path.commonpath([str(folder) for folder in sources]))
        if output.is_relative_to(data_root):
            raise ValueError(
                f"{output} lies inside the data folder {data_root}: the export never writes into "
                "the data it reads; choose a folder outside it"
            )
    output.mkdir(parents=True, exist_ok=True)
    return output


def _write_summary(dataset: DatasetDict, output: Path) -> None:
    summary = read_build_summary(dataset)
    if summary is not None:
        (output / BUILD_SUMMARY_FILE).write_text(summary.to_json() + "\n")


def write_parquet(dataset: DatasetDict, output_dir: str | Path) -> dict[str, Path]:
    """Write every split as one Parquet file with the images embedded.

    Args:
        dataset: A ``DatasetDict`` of the builders or the compositions (any features).
        output_dir: A new or empty folder outside the data folder.

    Returns:
        Split name -> its Parquet file (``<output_dir>/data/<split>-00000-of-00001.parquet``).

    Raises:
        FileExistsError: ``output_dir`` exists and is not empty.
        ValueError: ``output_dir`` lies inside the folder the images come from.
    """
    output = _prepare_output(dataset, output_dir)
    (output / _PARQUET_DIR).mkdir()
    written = {}
    for split_name, split in dataset.items():
        embedded = (
            split.with_format("arrow")
            .map(embed_table_storage, batched=True, keep_in_memory=True)
            .with_format(None)
        )
        path = output / _PARQUET_DIR / f"{split_name}-00000-of-00001.parquet"
        embedded.to_parquet(str(path))
        written[split_name] = path
    _write_summary(dataset, output)
    return written


def _metadata_key(column: str, first_image_column: str) -> str:
    return "file_name" if column == first_image_column else f"{column}_file_name"


def _write_image(value: dict | None, folder: Path, row: int) -> str | None:
    """Write one image (its bytes, or a copy of its file); its name relative to the split."""
    if not value or not (value.get("bytes") or value.get("path")):
        return None
    name = Path(value["path"]).name if value.get("path") else "image.png"
    target = folder / f"{row:06d}_{name}"
    if value.get("bytes"):
        target.write_bytes(value["bytes"])
    else:
        shutil.copyfile(value["path"], target)
    return f"{folder.name}/{target.name}"


def write_imagefolder(dataset: DatasetDict, output_dir: str | Path) -> dict[str, Path]:
    """Write every split as image files plus a ``metadata.jsonl`` for ``load_dataset("imagefolder")``.

    Each image column gets a sub-folder of the split (``image/``, ``mask/``; ``xray/``, ``ct/``);
    a row's missing image (a mask that is absent, an unpaired X-ray's CT) is ``null`` in the
    metadata. ClassLabel columns are written as class names.

    Args:
        dataset: A ``DatasetDict`` with at least one image column.
        output_dir: A new or empty folder outside the data folder.

    Returns:
        Split name -> its ``metadata.jsonl``.

    Raises:
        FileExistsError: ``output_dir`` exists and is not empty.
        ValueError: no image column, or ``output_dir`` lies inside the images' data folder.
    """
    first_split = next(iter(dataset.values()))
    columns = image_columns(first_split)
    if not columns:
        raise ValueError(
            f"the dataset has no image column (columns: {first_split.column_names}); "
            "write_parquet writes any dataset"
        )
    output = _prepare_output(dataset, output_dir)
    written = {}
    for split_name, split in dataset.items():
        split_dir = output / split_name
        folders = {column: split_dir / column for column in columns}
        for folder in folders.values():
            folder.mkdir(parents=True)
        raw = _undecoded(split)
        class_labels = {
            name: feature
            for name, feature in split.features.items()
            if isinstance(feature, ClassLabel)
        }
        metadata = split_dir / METADATA_FILE
        with metadata.open("w") as handle:
            for row, example in enumerate(raw):
                record = {
                    _metadata_key(column, columns[0]): _write_image(
                        example[column], folders[column], row
                    )
                    for column in columns
                }
                for name, value in example.items():
                    if name in columns:
                        continue
                    is_label = name in class_labels and value is not None
                    record[name] = class_labels[name].int2str(value) if is_label else value
                handle.write(json.dumps(record) + "\n")
        written[split_name] = metadata
    _write_summary(dataset, output)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build a data folder (or read a saved ``DatasetDict``) and export it.

    ``python -m hf_covid.data.parquet DATA_DIR OUTPUT [--kind radiography|xray_ct]
    [--format parquet|imagefolder]``; returns the exit status.
    """
    parser = argparse.ArgumentParser(
        description="Export a chest-imaging data set as local Parquet (images embedded) or as an "
        "imagefolder tree with metadata.jsonl; the data folder itself is never written to "
        "(research software, not a diagnostic device)."
    )
    parser.add_argument(
        "data_dir",
        type=Path,
        help="a data folder of the --kind layout, or a DatasetDict saved with save_to_disk",
    )
    parser.add_argument("output", type=Path, help="new or empty folder to write")
    parser.add_argument("--kind", choices=sorted(DATASET_BUILDERS), default="radiography")
    parser.add_argument("--format", choices=("parquet", "imagefolder"), default="parquet")
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        parser.error(f"{args.data_dir} is not a folder")
    if (args.data_dir / "dataset_dict.json").is_file():
        dataset = load_from_disk(str(args.data_dir))
    else:
        dataset = DATASET_BUILDERS[args.kind](args.data_dir)
    if args.output.resolve().is_relative_to(args.data_dir.resolve()):
        parser.error(f"{args.output} lies inside the data folder {args.data_dir}")
    writer = write_parquet if args.format == "parquet" else write_imagefolder
    written = writer(dataset, args.output)
    sizes = ", ".join(f"{name} {len(dataset[name])}" for name in written)
    print(f"wrote {args.format} splits ({sizes}) under {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
