"""hf_covid: Hugging Face-native COVID-19 chest imaging (X-ray and CT) toolkit."""

from . import models  # noqa: F401  (registers every Auto class)

__version__ = "0.1.0"
