"""Write the Kaggle Radiography and Mendeley X-ray + CT layouts from the public collections.

A thin wrapper of ``hf-covid prepare`` (:func:`hf_covid.data.public.prepare.main`)::

    python scripts/prepare_public_data.py public_data/ --output data/public_layouts
"""

from __future__ import annotations

import sys

from hf_covid.data.public.prepare import main

if __name__ == "__main__":
    sys.exit(main())
