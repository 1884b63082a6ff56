"""The phenotype cache: what a candidate's training is a function of, its seed, and the
rows already trained.

Candidate seeds derive from the run seed and the candidate's phenotype (its spec and
epochs), so a result never depends on which worker trained it or when; identical
phenotypes are trained once unless ``reevaluate`` asks for the published behaviour of
retraining parents, which then get per-evaluation seeds. With weight inheritance a
training's key and seed also name the row it inherited from (:meth:`Phenotypes.link`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from evoae.finish import phenotype_key
from evoae.objectives import Objective
from evoae.runs.journal import Row
from evoae.seeds import derive_seed
from evoae.settings import SearchSettings
from evoae.spaces import spec_key
from evoae.training.budget import epochs_for


class Phenotypes:
    """Keys, seeds and the cache of trained rows of one search."""

    def __init__(
        self, s: SearchSettings, n_train: int, objective: Objective, *, reevaluate: bool
    ) -> None:
        self.s, self.n_train, self.objective = s, int(n_train), objective
        self.reevaluate = reevaluate
        #: cache key -> the row that trained it.
        self.cache: dict[str, Row] = {}
        #: row id -> its cache key (kept with weight inheritance, for :meth:`link`).
        self.keys: dict[int, str] = {}

    def epochs_for(self, spec: dict[str, Any]) -> int:
        """The candidate's epochs: ``epochs``, more if needed for ``min_steps`` steps."""
        t = self.s.training
        return epochs_for(t.epochs, t.min_steps, self.n_train, int(spec["batch_size"]))

    def phenotype_key(self, spec: dict[str, Any]) -> str:
        """What a candidate's training is a function of (with the data): seeds derive from it."""
        return phenotype_key(self.s, self.n_train, spec)

    def cache_key(
        self, spec: dict[str, Any], *, epochs: int | None = None, parent: int | None = None
    ) -> str:
        """The cache's key: the phenotype, what it is scored on, the epochs of a planned
        (multi-fidelity) training, and the row it inherited its weights from (so it never
        shares an entry with a scratch one)."""
        key = self.phenotype_key(spec) + spec_key(self.objective.config()) + self.link(parent)
        return key if epochs is None else f"{key}@{int(epochs)}"

    def link(self, parent: int | None) -> str:
        """What an inherited training adds to its keys: the parent row and its key."""
        if parent is None:
            return ""
        digest = hashlib.sha256(f"{self.keys[parent]}#{parent}".encode()).hexdigest()
        return f"<{digest[:16]}"

    def seed_for(self, spec: dict[str, Any], eval_id: int, parent: int | None = None) -> int:
        """Row ``eval_id``'s training seed (per evaluation only with ``reevaluate``)."""
        key = self.phenotype_key(spec) + self.link(parent)
        if self.reevaluate:
            return derive_seed(self.s.seed, key, eval_id)
        return derive_seed(self.s.seed, key)
