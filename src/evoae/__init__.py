"""evoae: design autoencoders by neuroevolution.

The public names are imported on first use (PEP 562), so ``import evoae`` and the
command line's ``--help`` stay free of torch, scikit-learn and matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from evoae.errors import EvoaeError

if TYPE_CHECKING:
    from evoae.estimator import EvolvedAutoencoder
    from evoae.families.io import load_model, save_model
    from evoae.finish import SearchResult
    from evoae.loop import search
    from evoae.report.trackers import MLflowReporter, TensorBoardReporter
    from evoae.runs.reader import read_run
    from evoae.settings import SearchSettings

__version__ = "0.2.0"

#: Public name -> the module that defines it, imported when the name is first used.
_LAZY = {
    "EvolvedAutoencoder": "evoae.estimator",
    "SearchResult": "evoae.finish",
    "SearchSettings": "evoae.settings",
    "MLflowReporter": "evoae.report.trackers",
    "TensorBoardReporter": "evoae.report.trackers",
    "load_model": "evoae.families.io",
    "save_model": "evoae.families.io",
    "read_run": "evoae.runs.reader",
    "search": "evoae.loop",
}

__all__ = [
    "EvoaeError",
    "EvolvedAutoencoder",
    "MLflowReporter",
    "SearchResult",
    "SearchSettings",
    "TensorBoardReporter",
    "__version__",
    "load_model",
    "read_run",
    "save_model",
    "search",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'evoae' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
