"""hf_covid Gradio app as a Hugging Face Space: COVID-19 chest X-ray and CT classification with
Grad-CAM, lung masks and feature maps. Research software, not a diagnostic device.

The app is library code (:mod:`hf_covid.app`); this file only points it at this folder: models
from ``models.yaml`` (or the ``HF_COVID_*`` variables), examples from ``examples/``. ``demo`` is
module-level, so ``gradio app.py`` reload mode works; ``python app.py`` serves it.
"""

from pathlib import Path

from hf_covid.app import serve, space_app

app, host, port = space_app(Path(__file__).resolve().parent)
demo = app.demo

if __name__ == "__main__":
    serve(app, host, port)
