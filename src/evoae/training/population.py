"""Population-parallel training: many dense candidates trained as one stacked computation.

Small autoencoders trained with small batches leave a CPU mostly idle: per-layer
operator overhead, not arithmetic, dominates. :class:`PopulationEvaluator` trains a
batch of *different* dense candidates together:

* **Stacking.** Members are aligned layer by layer; layer slot ``l`` holds one weight
  tensor ``[members, in_max, out_max]`` and one bias ``[members, 1, out_max]``, padded
  to the widest member in that slot, and every product is one ``torch.baddbmm``.
* **Exact padding.** Padded weights and biases start at zero; each slot's output is
  multiplied by the member's unit mask after its activation (``sigmoid(0) = 0.5`` would
  otherwise leak), and ``softmax`` is taken with padded logits at ``-inf``, i.e. over the
  member's true width. Padded units are therefore exactly zero, their outgoing weights
  see zero inputs and their incoming weights zero output gradients: padded parameters
  receive exactly zero gradient under every optimizer, so they stay zero.
* **Depth.** A member with H hidden layers in a slot group of depth D > H passes
  through ``2 (D - H)`` slots placed right after its code layer (at its code width, the
  narrowest place): there its output is its input, so its zero weights in those slots
  get no gradient.
* **Activations.** In each slot, consecutive members with the same activation form a
  run; each run's function is applied to its own slice (a view) and the slices are
  concatenated. Members are ordered so that runs are long.
* **Optimizer.** Members are ordered by (rule, learning rate) inside a stack, so the
  members sharing a rule and a rate form one contiguous slice of every parameter, and
  each slice gets one update: SGD as ``torch.optim.SGD``, Adam/AdamW with PyTorch's
  fused kernels (eps 1e-7, as :func:`evoae.training.optim.make_optimizer`).
* **Data order.** Every member sees its *own* batch order, ``batch_order(n, epochs,
  seed)`` from its task seed, exactly as sequential training does; batches are gathered
  per member (``x[perm]`` of shape ``[members, batch, features]``). So a member's run
  is reproducible from (spec, seed, epochs, data) and agrees with
  :func:`evoae.training.trainer.train_candidate` to float32 tolerance (the summation
  order inside a batched product differs; results are bit-identical for the same batch
  of tasks on the same machine).

Grouping: members share steps, so a stack holds members with the same batch size and
epoch count. Within such a group members are sorted by cost and cut into stacks (see
:func:`plan_stacks`) trading a stack's fixed per-step overhead against its padding, so
that the padding waste (``1 - true FLOPs / padded FLOPs``) of every stack stays below
``max_waste`` and its estimated memory within the budget (the budget also caps the
validation rows scored at once; an out-of-memory error halves the stack and retries).
A member whose loss turns non-finite is marked failed, its slice is zeroed and excluded
from the loss; the others continue undisturbed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from evoae.families import FAMILIES, Stacker, build_model, family_of
from evoae.models import count_params
from evoae.models.layers import OPT_ORDER as _OPT_ORDER
from evoae.objectives import EvalSplit, Objective, Reconstruction, Score
from evoae.training.evaluator import Evaluator, Task, resolve_device, train_task
from evoae.training.optim import ADAM_EPS
from evoae.training.threads import torch_threads
from evoae.training.trainer import (
    EVAL_BATCH,
    Result,
    as_split,
    batch_order,
    make_result,
)

#: PyTorch defaults that make_optimizer keeps.
_BETAS = (0.9, 0.999)
_ADAMW_DECAY = 1e-2

# ---------------------------------------------------------------- the stacked optimizer


class StackedOptimizer:
    """Each member's own rule (SGD, Adam or AdamW) and learning rate on its own slice.

    Members must be ordered by (rule as :data:`_OPT_ORDER`, learning rate), as the stack
    planner does, so that members sharing a rule and a rate form one contiguous slice
    ``[start, stop)`` of every stacked parameter. Each slice gets one call: SGD is
    ``p.add_(g, alpha=-lr)`` as ``torch.optim.SGD``; Adam and AdamW use PyTorch's fused
    kernels (one pass over the slice) with eps 1e-7 as
    :func:`evoae.training.optim.make_optimizer`.
    """

    def __init__(
        self, params: Sequence[torch.Tensor], optimizers: Sequence[str], lrs: Sequence[float]
    ) -> None:
        keys = [(_OPT_ORDER[o], float(lr)) for o, lr in zip(optimizers, lrs, strict=True)]
        if keys != sorted(keys):
            raise ValueError("members must be ordered by (optimizer, learning rate)")
        self.params = list(params)
        self.groups: list[tuple[str, float, int, int]] = []
        start = 0
        for i in range(1, len(keys) + 1):
            if i == len(keys) or keys[i] != keys[start]:
                self.groups.append((optimizers[start], float(lrs[start]), start, i))
                start = i
        device = self.params[0].device
        # Fused Adam reads the step count from a float tensor; all members share it.
        self.step_count = torch.zeros((), dtype=torch.float32, device=device)
        self.moments: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for g, (name, _, a, b) in enumerate(self.groups):
            if name != "sgd":
                self.moments[g] = (
                    [torch.zeros_like(p[a:b]) for p in self.params],
                    [torch.zeros_like(p[a:b]) for p in self.params],
                )

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def reset_member(self, m: int) -> None:
        """Forget a (failed) member's moments so its zeroed slice stays zero."""
        for g, (_, _, a, b) in enumerate(self.groups):
            if g in self.moments and a <= m < b:
                for t in self.moments[g][0] + self.moments[g][1]:
                    t[m - a].zero_()

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        for g, (name, lr, a, b) in enumerate(self.groups):
            if name == "sgd":
                for p in self.params:
                    p[a:b].add_(p.grad[a:b], alpha=-lr)
                continue
            fused = torch._fused_adam_ if name == "adam" else torch._fused_adamw_
            mom, sq = self.moments[g]
            fused(
                [p[a:b] for p in self.params],
                [p.grad[a:b] for p in self.params],
                mom,
                sq,
                [],
                [self.step_count] * len(self.params),
                lr=lr,
                beta1=_BETAS[0],
                beta2=_BETAS[1],
                weight_decay=_ADAMW_DECAY if name == "adamw" else 0.0,
                eps=ADAM_EPS,
                amsgrad=False,
                maximize=False,
            )


# ---------------------------------------------------------------- training one stack


@dataclass
class StackRun:
    """What training one stack produced, in stack order."""

    results: list[Result]
    epoch_losses: list[list[float]]
    stack: Any
    seconds: float
    flops: int = 0
    padded_flops: int = 0


def train_stack(
    specs: Sequence[dict[str, Any]],
    seeds: Sequence[int],
    x_train: torch.Tensor,
    x_val: torch.Tensor,
    *,
    epochs: int,
    eval_rows: int = EVAL_BATCH,
    build: Callable[..., Any] | None = None,
    objective: Objective | None = None,
    val_split: EvalSplit | None = None,
) -> StackRun:
    """Train same-batch-size candidates together and score them on ``x_val``.

    ``specs`` must be ordered by optimizer and learning rate (see
    :class:`StackedOptimizer`). ``build(specs, seeds, device)`` makes the stack (default: the
    family's stacker); a stack provides ``weights`` (member-first parameters),
    ``params_count``, ``losses(xb)`` (per-member training losses of ``[members, batch,
    ...]`` rows), ``evaluate(x, rows)`` (per-member ``{"loss": ..., terms}``),
    ``zero_member(m)`` and ``macs()`` (true and padded multiply-adds per row). Returns
    per-member results with the fields :func:`train_candidate` fills; ``seconds`` is
    each member's equal share of the stack's wall time. An ``objective`` that is not the
    model's own loss scores each member separately (``stack.member_model``) on
    ``val_split`` (default: ``x_val`` without labels).
    """
    t0 = time.perf_counter()
    device = x_train.device
    batch = int(specs[0]["batch_size"])
    if any(int(s["batch_size"]) != batch for s in specs):
        raise ValueError("a stack needs one batch size")
    m = len(specs)
    x = x_train
    stacker = family_of(specs[0]).stacker
    if build is None and stacker is None:
        raise ValueError(f"family {specs[0]['family']!r} has no stacker")
    stack = (build or stacker.build)(specs, seeds, device)  # type: ignore[union-attr]
    stack.train()
    opt = StackedOptimizer(
        list(stack.weights), [s["optimizer"] for s in specs], [float(s["lr"]) for s in specs]
    )
    objective = objective if objective is not None else Reconstruction()

    def val_losses() -> list[float]:
        """The members' validation losses: their learning curves, after every epoch but
        the last (scored below), when the objective is the model's loss."""
        return [t["loss"] for t in stack.evaluate(x_val, eval_rows)]

    errors, epoch_losses, epoch_vals = _fit_stack(
        stack, opt, x, seeds, epochs, batch, val_losses if objective.model_loss else None
    )
    stack.eval()
    scores = _score_stack(stack, objective, x_val, eval_rows, val_split, errors)
    seconds = (time.perf_counter() - t0) / m
    results = [
        make_result(
            scores[i],
            epoch_losses[i],
            stack.params_count[i],
            seconds,
            objective=objective,
            error=errors[i],
            val_curve=epoch_vals[i],
        )
        for i in range(m)
    ]
    true, padded = stack.macs()
    return StackRun(results, epoch_losses, stack, time.perf_counter() - t0, true, padded)


def _fit_stack(
    stack: Any,
    opt: StackedOptimizer,
    x: torch.Tensor,
    seeds: Sequence[int],
    epochs: int,
    batch: int,
    val_losses: Callable[[], list[float]] | None = None,
) -> tuple[list[str | None], list[list[float]], list[dict[int, float]]]:
    """Train every member on its own batch order; a diverged member is frozen at zero
    (its error recorded) and the batch redone without it. Returns errors, per-epoch
    training losses and validation losses (``val_losses()`` after every epoch but the
    last, when given), per member."""
    m, n, device = len(seeds), x.shape[0], x.device
    errors: list[str | None] = [None] * m
    alive = torch.ones(m, dtype=torch.bool, device=device)
    orders = [batch_order(n, epochs, seed) for seed in seeds]
    epoch_losses: list[list[float]] = [[] for _ in range(m)]
    epoch_vals: list[dict[int, float]] = [{} for _ in range(m)]
    for e in range(epochs):
        perms = torch.stack([o[e] for o in orders]).to(device)
        total = torch.zeros(m, dtype=torch.float64, device=device)
        for start in range(0, n, batch):
            idx = perms[:, start : start + batch]
            xb = x[idx]
            losses = stack.losses(xb)
            bad = ~torch.isfinite(losses) & alive
            if bool(bad.any()):
                for i in torch.nonzero(bad).flatten().tolist():
                    errors[i] = "training loss diverged"
                    stack.zero_member(i)
                    opt.reset_member(i)
                alive &= ~bad
                losses = stack.losses(xb)
            opt.zero_grad()
            torch.where(alive, losses, 0.0).sum().backward()
            opt.step()
            total += losses.detach() * idx.shape[1]
        for i, v in enumerate((total / n).tolist()):
            if errors[i] is None:
                epoch_losses[i].append(v)
        if val_losses is not None and e < epochs - 1:
            stack.eval()
            with torch.no_grad():
                for i, v in enumerate(val_losses()):
                    if errors[i] is None:
                        epoch_vals[i][e + 1] = v
            stack.train()
    return errors, epoch_losses, epoch_vals


def _score_stack(
    stack: Any,
    objective: Objective,
    x_val: torch.Tensor,
    eval_rows: int,
    val_split: EvalSplit | None,
    errors: Sequence[str | None],
) -> list[Score | None]:
    """Each member's score: in one pass when the objective is the model's own loss, else
    member by member (None for a diverged member)."""
    if objective.model_loss:
        scores: list[Score | None] = []
        for terms in stack.evaluate(x_val, eval_rows):
            loss = terms.pop("loss")
            scores.append(Score(loss, terms))
        return scores
    split = val_split if val_split is not None else EvalSplit(x_val)
    return [
        objective.score(stack.member_model(i).to(x_val.device).eval(), split)
        if errors[i] is None
        else None
        for i in range(len(errors))
    ]


def default_memory_budget(device: torch.device) -> int:
    """Bytes a stack may use: half the free GPU memory, or a quarter of free RAM (<= 4 GiB)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        free = 4 << 30
    return int(min(free // 4, 4 << 30))


# ---------------------------------------------------------------- the evaluator


@dataclass
class PopulationStats:
    """Accumulated over an evaluator's life: stacks, members and padding."""

    stacks: int = 0
    members: int = 0
    flops: int = 0
    padded_flops: int = 0
    sizes: list[int] = field(default_factory=list)
    conv_stacks: int = 0
    conv_members: int = 0

    @property
    def padding_waste(self) -> float:
        """Fraction of stacked multiply-adds spent on padding."""
        return 1.0 - self.flops / self.padded_flops if self.padded_flops else 0.0


class PopulationEvaluator(Evaluator):
    """Trains a batch of tasks as stacked populations (see the module docstring).

    Dense tasks are stacked (padded, see the module docstring); conv tasks are bucketed
    by structure (:func:`evoae.families.conv.stack.conv_stack_key`) and each bucket
    is stacked along channels; tasks of other families are trained one at a time with
    :func:`train_candidate`, as are members initialised from data (PCA-seeded). Results
    come back stack by stack.

    Parameters
    ----------
    x_train, x_val
        Training and validation data, kept on ``device``.
    device
        ``cpu``, ``cuda`` or ``auto``.
    max_waste
        Largest padding waste a stack may have (0 stacks only identical shapes).
    memory_budget
        Bytes one stack may use (estimated); default :func:`default_memory_budget`.
    max_members
        Largest stack.
    """

    def __init__(
        self,
        train: Any,
        val: Any,
        device: str = "cpu",
        *,
        max_waste: float = 0.6,
        memory_budget: int | None = None,
        max_members: int = 64,
        objective: Objective | None = None,
        threads: int | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.threads = threads
        self.train = as_split(train, self.device)
        self.val = as_split(val, self.device)
        self.x_train, self.x_val = self.train.x, self.val.x
        self.objective = objective if objective is not None else Reconstruction()
        self.max_waste = float(max_waste)
        self.memory_budget = (
            default_memory_budget(self.device) if memory_budget is None else int(memory_budget)
        )
        self.max_members = int(max_members)
        self.stats = PopulationStats()

    def evaluate(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Result]]:
        with torch_threads(self.threads):
            yield from self._evaluate(tasks)

    def _evaluate(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Result]]:
        # A member initialised from data (``"init": "pca"``) or whose task resumes, saves
        # or inherits a checkpoint is trained on its own.
        stackers = [
            None if t.spec.get("init") or not t.plain else family_of(t.spec).stacker for t in tasks
        ]
        for i, t in enumerate(tasks):
            if stackers[i] is None:
                yield i, train_task(t, self.train, self.val, self.objective)
        done: set[int] = set()
        for family in FAMILIES.values():  # registry order: one stacker's tasks at a time
            stacker = family.stacker
            if stacker is None or id(stacker) in done:
                continue
            done.add(id(stacker))
            mine = [i for i, st in enumerate(stackers) if st is stacker]
            if not mine:
                continue
            plan = stacker.plan(
                [tasks[i].spec for i in mine],
                [tasks[i].epochs for i in mine],
                max_waste=self.max_waste,
                memory_budget=self.memory_budget,
                max_members=self.max_members,
            )
            for members in plan:
                yield from self._train([mine[j] for j in members], tasks, stacker)

    def _train(
        self, idx: list[int], tasks: Sequence[Task], stacker: Stacker
    ) -> Iterator[tuple[int, Result]]:
        specs = [tasks[i].spec for i in idx]
        rows = self._eval_rows(specs, stacker.bytes)
        try:
            run = train_stack(
                specs,
                [tasks[i].seed for i in idx],
                self.x_train,
                self.x_val,
                epochs=tasks[idx[0]].epochs,
                eval_rows=rows,
                build=stacker.build,
                objective=self.objective,
                val_split=self.val,
            )
        except torch.OutOfMemoryError:
            if len(idx) > 1:  # the estimate was too low: halve the stack and retry
                half = len(idx) // 2
                yield from self._train(idx[:half], tasks, stacker)
                yield from self._train(idx[half:], tasks, stacker)
                return
            params = count_params(build_model(specs[0], 0))
            yield idx[0], Result.failed(params, 0.0, "out of memory")
            return
        if not stacker.padded:  # unpadded: counted as stacks and members only
            self.stats.conv_stacks += 1
            self.stats.conv_members += len(idx)
            yield from zip(idx, run.results, strict=True)
            return
        self.stats.stacks += 1
        self.stats.members += len(idx)
        self.stats.flops += run.flops
        self.stats.padded_flops += run.padded_flops
        self.stats.sizes.append(len(idx))
        yield from zip(idx, run.results, strict=True)

    def _eval_rows(self, specs: Sequence[dict[str, Any]], estimate: Callable[..., int]) -> int:
        """Validation rows per forward pass: ``EVAL_BATCH`` unless the budget needs fewer."""
        rows = EVAL_BATCH
        while rows > 64 and estimate(specs, rows) > self.memory_budget:
            rows //= 2
        return rows


def make_population_evaluator(
    train: Any, val: Any, *, device: str = "cpu", **options: Any
) -> PopulationEvaluator:
    """Registry factory: takes the population options it knows, ignores the others."""
    names = ("max_waste", "memory_budget", "max_members", "objective", "threads")
    known = {k: options[k] for k in names if options.get(k) is not None}
    return PopulationEvaluator(train, val, device, **known)
