"""evoae: design autoencoders by neuroevolution."""

from evoae.errors import EvoaeError
from evoae.estimator import EvolvedAutoencoder
from evoae.models.io import load_model, save_model
from evoae.search import SearchResult, SearchSettings, search

__version__ = "0.1.0"

__all__ = [
    "EvoaeError",
    "EvolvedAutoencoder",
    "SearchResult",
    "SearchSettings",
    "__version__",
    "load_model",
    "save_model",
    "search",
]
