"""Seeds: the one bound every seed obeys and the one way evoae derives seeds from seeds.

A run seed, a candidate seed and a sampling seed are integers in ``[0, MAX_SEED]`` (63
bits, what ``torch.Generator.manual_seed`` and SQLite's INTEGER both hold). Candidate
seeds are derived from the run seed and the candidate's phenotype by
:func:`derive_seed`, so a result never depends on which worker trained it or when.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from evoae.errors import EvoaeError

#: The largest seed evoae takes or makes.
MAX_SEED = 2**63 - 1


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any JSON-able parts; stable across machines and Python runs."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") & MAX_SEED


def in_range(value: Any) -> bool:
    """An integer (not a bool) in ``[0, MAX_SEED]``."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEED


def check_seed(value: Any, label: str = "seed") -> int:
    """``value`` as a seed, or a one-line error naming ``label`` and the range."""
    if not in_range(value):
        raise EvoaeError(f"{label} must be an integer between 0 and 2**63 - 1, got {value!r}")
    return int(value)
