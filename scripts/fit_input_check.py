"""Fit the upload input check, evaluate it on held-out images, write its parameters and report.

    python scripts/fit_input_check.py --public-data PUBLIC_COLLECTIONS_FOLDER

Writes ``hf_covid/data/input_check_params.json`` and ``docs/input_check.md``. The reference
images and the held-out rule: :mod:`hf_covid.data.input_check_references`; the fitting and the
report: :mod:`hf_covid.data.input_check_fitting`.
"""

import sys

from hf_covid.data.input_check_fitting import main

if __name__ == "__main__":
    sys.exit(main())
