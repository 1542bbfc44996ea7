"""Model and dataset card templates, installed as the package data ``hf_covid.model_cards``."""
