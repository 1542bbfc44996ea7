"""The real-data study: an ablation from the first study's data to every shortcut mitigation.

Modules: :mod:`.run` (the command line and :func:`~.run.run_study`), :mod:`.configurations`
(the ablation's steps), :mod:`.probe_data` (what the probes share: folders, the images as a
configuration shows them, predictions), :mod:`.confounds` (collection probe, lungs-only drop,
leave one source out), :mod:`.explanations` (CAM scores on real X-rays), :mod:`.confounds_report`
and :mod:`.report` (``public_study.md`` and its charts). Research software, not a diagnostic
device.
"""

# The package re-exports nothing: its modules are imported by name (``hf_covid.study.run``), so
# importing one probe does not import training.
__all__: list[str] = []
