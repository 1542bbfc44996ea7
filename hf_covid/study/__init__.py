"""The real-data study: every model trained and evaluated on the public collections, confounds measured."""
