"""The real-data study: every model trained and evaluated on the public collections, confounds measured.

Modules: :mod:`.run` (the command line and :func:`~.run.run_study`), :mod:`.masks` (U-Net masks
for every image), :mod:`.probe_data` (what the probes share), :mod:`.confounds` and
:mod:`.confounds_report` (the confound probes and their section), :mod:`.explanations` (CAM
scores on real X-rays), :mod:`.report` (``public_study.md``). Research software, not a
diagnostic device.
"""

# The package re-exports nothing: its modules are imported by name (``hf_covid.study.run``), so
# importing one probe does not import training.
__all__: list[str] = []
