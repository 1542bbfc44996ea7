"""The real-data study: train and evaluate every model on the public collections.

Example:
    python scripts/study.py --collections-root public_data/ --output-dir /tmp/study --docs-dir docs

``--collections-root`` is the public collections root (ieee8023/, kermany/, covid_ct/).

See hf_covid.study.run for what it does; research software, not a diagnostic device.
"""

import sys

from hf_covid.study.run import main

if __name__ == "__main__":
    sys.exit(main())
