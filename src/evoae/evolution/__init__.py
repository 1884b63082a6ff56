"""Search strategies behind one ask/tell interface."""

from evoae.evolution.base import Strategy
from evoae.evolution.microbial import MicrobialGA

__all__ = ["MicrobialGA", "Strategy"]
