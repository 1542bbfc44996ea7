"""Write the Kaggle Radiography and Mendeley X-ray + CT layouts from public collections.

See ``hf_covid.data.public.prepare``. The collections folder holds the upstream folders side by
side (``ieee8023/`` or ``covid-chestxray-dataset/``, ``kermany/chest_xray/`` or ``chest_xray/``,
``covid_ct/``); they are only read. Example::

    python scripts/prepare_public_data.py ../shared/public_data --output data/public_layouts
    python scripts/prepare_public_data.py collections --output out \\
        --class-map '{"Lung_Opacity": ["ieee8023:bacterial", "ieee8023:fungal"]}'

Many of these images carry non-commercial, no-derivatives or no stated licence (see
``provenance.csv``): keep what this writes for research use and do not redistribute it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from hf_covid.data.public.prepare import LAYOUTS, prepare_public_data


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collections", type=Path, help="folder holding the upstream collections")
    parser.add_argument("--output", type=Path, required=True, help="folder to write")
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument("--classes", nargs="+", help="Radiography classes (default: those filled)")
    parser.add_argument(
        "--class-map",
        type=json.loads,
        help='JSON, e.g. \'{"Lung_Opacity": ["ieee8023:bacterial"]}\'',
    )
    parser.add_argument("--include-lateral", action="store_true", help="keep lateral X-rays")
    parser.add_argument(
        "--no-ieee8023-ct", action="store_true", help="CTs from COVID-CT only (X-ray + CT layout)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace layouts already written")
    parser.add_argument("--skip-bad-images", action="store_true")
    parser.add_argument("--cache-dir", type=Path, help="scan cache (default: the datasets cache)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Write the layouts and print where they are."""
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    prepared = prepare_public_data(
        arguments.collections,
        arguments.output,
        layouts=arguments.layouts,
        classes=arguments.classes,
        class_map=arguments.class_map,
        include_lateral=arguments.include_lateral,
        include_ieee8023_ct=not arguments.no_ieee8023_ct,
        overwrite=arguments.overwrite,
        skip_bad_images=arguments.skip_bad_images,
        cache_dir=arguments.cache_dir,
    )
    for layout, count in prepared.images_written.items():
        print(f"{layout}: {count} images in {getattr(prepared, layout)}")
    print(f"provenance and licences: {prepared.provenance}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
