"""evoae: design autoencoders by neuroevolution."""

from evoae.errors import EvoaeError
from evoae.estimator import EvolvedAutoencoder
from evoae.families.io import load_model, save_model
from evoae.finish import SearchResult
from evoae.loop import search
from evoae.settings import SearchSettings

__version__ = "0.2.0"

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
