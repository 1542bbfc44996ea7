"""Serving the models: what the app and any other front end build on.

Modules (import them directly; this package imports nothing itself, so that
:mod:`hf_covid.inference` and these modules can use each other without a cycle):

- :mod:`~hf_covid.serving.images`: reading one input image under the input policy (``read_image``,
  ``InputError``).
- :mod:`~hf_covid.serving.overlays`: heat-map and mask overlays, feature-map grids.
- :mod:`~hf_covid.serving.served`: the served models (``load_served_models``), their checkpoint
  sources with Hub revisions, and what each was trained on (``ModelProvenance``).
- :mod:`~hf_covid.serving.latency`: timing a running app through ``gradio_client``.

The predictor itself is :class:`hf_covid.inference.ChestPredictor`.
"""

__all__: list[str] = []
