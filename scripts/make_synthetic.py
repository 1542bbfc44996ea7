"""Write synthetic chest phantom datasets (see ``hf_covid.data.synthetic``); same as ``hf-covid synth``.

Example::

    python scripts/make_synthetic.py --output outputs/demo/data --layout all --images-per-class 200

The options: ``python scripts/make_synthetic.py --help`` (:mod:`hf_covid.data.synthetic.run`).
"""

import sys

from hf_covid.data.synthetic.run import main

if __name__ == "__main__":
    sys.exit(main())
