"""``python -m hf_covid.study``: the study's command line (`hf_covid.study.run.main`)."""

import sys

from .run import main

sys.exit(main())
