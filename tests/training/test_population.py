"""Population-parallel training agrees with training each candidate alone."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import evoae.training.population as population
from evoae.data import load_dataset
from evoae.execution import make_evaluator
from evoae.families import build_model
from evoae.families.conv.stack import ConvStack
from evoae.families.dense.space import dense_preset
from evoae.families.dense.stack import DenseStack, plan_stacks, stack_bytes, stack_flops
from evoae.loop import search
from evoae.models import count_params
from evoae.training.evaluator import Task
from evoae.training.population import (
    PopulationEvaluator,
    StackedOptimizer,
    train_stack,
)
from evoae.training.trainer import evaluate, fit, train_candidate


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    ds = load_dataset("digits")
    x = torch.as_tensor(ds.x).reshape(len(ds.x), -1)
    return x[:256].contiguous(), x[256:512].contiguous()


def _spec(hidden, code, out, opt, lr, batch=32, d=64):
    return {
        "family": "dense",
        "input_dim": d,
        "code_size": 4,
        "hidden": [list(h) for h in hidden],
        "code_activation": code,
        "output_activation": out,
        "optimizer": opt,
        "lr": lr,
        "batch_size": batch,
    }


#: Depths 0-3, every seed activation (softmax and sigmoid in padded slots), three rules.
MIXED = [
    _spec([(40, "sigmoid"), (20, "relu")], "softmax", "sigmoid", "adam", 0.001),
    _spec([(30, "tanh")], "linear", "linear", "sgd", 0.05),
    _spec([], "sigmoid", "softmax", "adam", 0.01),
    _spec([(50, "softmax"), (10, "linear"), (6, "sigmoid")], "tanh", "relu", "sgd", 0.1),
    _spec([(20, "elu")], "gelu", "sigmoid", "adamw", 0.003),
    _spec([(60, "relu"), (5, "softmax")], "sigmoid", "linear", "adam", 0.001),
]
SEEDS = [11, 12, 13, 14, 15, 16]


def _stack_order(specs):
    (order,) = plan_stacks(specs, [2] * len(specs), max_waste=1.0, overhead_macs=1e18)
    return order


def test_mixed_population_matches_training_alone(data):
    x, xv = data
    order = _stack_order(MIXED)
    assert sorted(order) == list(range(len(MIXED)))
    run = train_stack([MIXED[i] for i in order], [SEEDS[i] for i in order], x, xv, epochs=2)
    assert run.stack.depth == 3
    for j, i in enumerate(order):
        spec, seed = MIXED[i], SEEDS[i]
        alone = build_model(spec, seed)
        losses = fit(
            alone,
            x,
            epochs=2,
            batch_size=spec["batch_size"],
            optimizer=spec["optimizer"],
            lr=spec["lr"],
            seed=seed,
        )
        np.testing.assert_allclose(run.epoch_losses[j], losses, rtol=0, atol=1e-5)
        val = evaluate(alone, xv)
        got = run.results[j]
        assert got.status == "ok"
        assert got.fitness == pytest.approx(val["loss"], abs=1e-5)
        assert got.terms["mse"] == pytest.approx(val["mse"], abs=1e-5)
        assert got.train_loss == pytest.approx(losses[-1], abs=1e-5)
        assert got.params == count_params(alone)
        member = run.stack.member_model(j).state_dict()
        for name, w in alone.state_dict().items():
            torch.testing.assert_close(member[name], w, rtol=1e-4, atol=1e-5, msg=name)


def test_initial_weights_are_copied_exactly():
    order = _stack_order(MIXED)
    stack = DenseStack([MIXED[i] for i in order], [SEEDS[i] for i in order])
    for j, i in enumerate(order):
        want = build_model(MIXED[i], SEEDS[i]).state_dict()
        got = stack.member_model(j).state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want)


def _padding_masks(stack: DenseStack) -> list[torch.Tensor]:
    """True where a stacked parameter belongs to no member's real layer."""
    masks = []
    real = [torch.zeros_like(p, dtype=torch.bool) for p in stack.weights]
    for m, spec in enumerate(stack.specs):
        model = build_model(spec, 0)
        linears = [x for x in model.modules() if isinstance(x, torch.nn.Linear)]
        for slot_i, lin in zip(stack._real[m], linears, strict=True):
            real[2 * slot_i][m, : lin.in_features, : lin.out_features] = True
            real[2 * slot_i + 1][m, 0, : lin.out_features] = True
    for r in real:
        masks.append(~r)
    return masks


def test_padded_weights_stay_zero_and_get_no_gradient(data):
    x, _ = data
    specs = [dict(s, batch_size=16) for s in MIXED]
    order = _stack_order(specs)
    specs = [specs[i] for i in order]
    stack = DenseStack(specs, [SEEDS[i] for i in order])
    pads = _padding_masks(stack)
    assert sum(int(p.sum()) for p in pads) > 0
    opt = StackedOptimizer(
        list(stack.weights), [s["optimizer"] for s in specs], [s["lr"] for s in specs]
    )
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        xb = x[torch.randint(0, x.shape[0], (len(specs), 16), generator=g)]
        opt.zero_grad()
        stack.mse(xb).sum().backward()
        for p, pad in zip(stack.weights, pads, strict=True):
            assert torch.count_nonzero(p.grad[pad]) == 0
        opt.step()
    for p, pad in zip(stack.weights, pads, strict=True):
        assert torch.count_nonzero(p.detach()[pad]) == 0
        assert torch.isfinite(p).all()


def test_diverging_member_fails_alone(data):
    x, xv = data
    bomb = _spec([(30, "linear")], "linear", "linear", "sgd", 1e6)
    specs = [*MIXED, bomb]
    seeds = [*SEEDS, 99]
    order = _stack_order(specs)
    run = train_stack([specs[i] for i in order], [seeds[i] for i in order], x, xv, epochs=2)
    by_index = dict(zip(order, run.results, strict=True))
    failed = by_index[len(MIXED)]
    assert failed.status == "failed" and math.isinf(failed.fitness)
    assert failed.error == "training loss diverged"
    alone, _ = train_candidate(bomb, x, xv, epochs=2, seed=99)
    assert alone.status == "failed"
    for i, spec in enumerate(MIXED):
        ref, _ = train_candidate(spec, x, xv, epochs=2, seed=SEEDS[i])
        assert by_index[i].status == "ok"
        assert by_index[i].fitness == pytest.approx(ref.fitness, abs=1e-5)
    j = order.index(len(MIXED))
    assert all(torch.count_nonzero(p[j]) == 0 for p in run.stack.weights)


def test_evaluator_is_reproducible_and_covers_every_task(data):
    x, xv = data
    space = dense_preset("extended", 64, 4)
    rng = np.random.default_rng(3)
    tasks = [Task(space.decode(space.sample(rng)), 100 + i, 1) for i in range(12)]
    ev = make_evaluator("population", x, xv, device="cpu", workers=3, ray_address=None)
    assert isinstance(ev, PopulationEvaluator)
    first = dict(ev.evaluate(tasks))
    second = dict(make_evaluator("population", x, xv).evaluate(tasks))
    assert sorted(first) == list(range(len(tasks)))
    for i in range(len(tasks)):
        assert first[i].fitness == second[i].fitness or (
            math.isinf(first[i].fitness) and math.isinf(second[i].fitness)
        )
        assert first[i].train_loss == second[i].train_loss
    assert ev.stats.members == len(tasks)
    assert 0.0 <= ev.stats.padding_waste < 1.0
    for i in (0, 5, 11):
        ref, _ = train_candidate(tasks[i].spec, x, xv, epochs=1, seed=tasks[i].seed)
        assert first[i].status == ref.status
        if ref.status == "ok":
            assert first[i].fitness == pytest.approx(ref.fitness, abs=1e-5)


def test_plan_stacks_bounds_waste_memory_and_groups_batch_sizes():
    space = dense_preset("extended", 256, 4)
    rng = np.random.default_rng(0)
    specs = [space.decode(space.sample(rng)) for _ in range(40)]
    epochs = [2] * 40
    plan = plan_stacks(specs, epochs, max_waste=0.3, memory_budget=1 << 40)
    assert sorted(i for s in plan for i in s) == list(range(40))
    for stack in plan:
        assert len({specs[i]["batch_size"] for i in stack}) == 1
        if len(stack) > 1:
            true, padded = stack_flops([specs[i] for i in stack])
            assert 1 - true / padded <= 0.3
    tiny = plan_stacks(specs, epochs, max_waste=1.0, memory_budget=1)
    assert all(len(s) == 1 for s in tiny)


def test_search_runs_with_population_executor(tmp_path):
    result = search(
        "digits",
        out=tmp_path / "run",
        strategy="microbial",
        population=4,
        generations=2,
        concurrent=2,
        epochs=1,
        final_epochs=1,
        executor="population",
        seed=5,
    )
    assert result.n_evaluations == 4 + 2
    assert math.isfinite(result.best_fitness)


def test_memory_budget_and_out_of_memory_split_stacks(data, monkeypatch):
    x, xv = data
    tasks = [Task(spec, SEEDS[i], 1) for i, spec in enumerate(MIXED)]
    roomy = dict(PopulationEvaluator(x, xv, max_waste=1.0).evaluate(tasks))
    tight = PopulationEvaluator(x, xv, memory_budget=1)
    small = dict(tight.evaluate(tasks))
    assert tight.stats.sizes == [1] * len(tasks)
    assert tight._eval_rows([MIXED[0]], stack_bytes) < 2048
    real = population.train_stack
    sizes: list[int] = []

    def fails_when_stacked(specs, *args, **kwargs):
        sizes.append(len(specs))
        if len(specs) > 1:
            raise torch.OutOfMemoryError("simulated")
        return real(specs, *args, **kwargs)

    monkeypatch.setattr(population, "train_stack", fails_when_stacked)
    split = PopulationEvaluator(x, xv, max_waste=1.0, memory_budget=1 << 40)
    halved = dict(split.evaluate(tasks))
    assert sizes[0] > 1 and split.stats.sizes == [1] * len(tasks)
    for i in range(len(tasks)):
        for got in (small[i], halved[i]):
            assert got.status == "ok"
            assert got.fitness == pytest.approx(roomy[i].fitness, abs=1e-5)


def _conv_spec(family, acts, bns, opt, lr, *, beta=1.0, dense=7, filters=(6, 5)):
    spec = {
        "family": family,
        "input_shape": [1, 8, 8],
        "code_size": 2,
        "blocks": [[filters[0], 3, 2, acts[0], bns[0]], [filters[1], 3, 1, acts[1], bns[1]]],
        "dense": dense,
        "variational": family == "conv-vae",
        "optimizer": opt,
        "lr": lr,
        "batch_size": 32,
    }
    if family == "conv-vae":
        spec.update(beta=beta, recon_loss="bce")
    return spec


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    ds = load_dataset("digits")
    x = torch.as_tensor(ds.x)
    return x[:192].contiguous(), x[192:320].contiguous()


@pytest.mark.parametrize("family", ["conv-vae", "conv-ae"])
def test_conv_stack_matches_training_alone(images, family):
    x, xv = images
    specs = [
        _conv_spec(family, ["relu", "tanh"], [False, True], "adam", 0.001, beta=1.0),
        _conv_spec(family, ["sigmoid", "tanh"], [False, True], "adam", 0.003, beta=0.5),
        _conv_spec(family, ["elu", "gelu"], [False, True], "sgd", 0.05, beta=2.0),
    ]
    seeds = [3, 4, 5]
    run = train_stack(specs, seeds, x, xv, epochs=2, build=ConvStack)
    for j, (spec, seed) in enumerate(zip(specs, seeds, strict=True)):
        alone = build_model(spec, seed)
        losses = fit(
            alone, x, epochs=2, batch_size=32, optimizer=spec["optimizer"], lr=spec["lr"], seed=seed
        )
        np.testing.assert_allclose(run.epoch_losses[j], losses, rtol=1e-5)
        val = evaluate(alone, xv)
        got = run.results[j]
        assert got.status == "ok" and got.params == count_params(alone)
        # A conv bias feeding batch norm has an exactly-zero true gradient; Adam normalises
        # its float noise to lr-sized steps, so that bias and the running mean it shifts
        # drift apart at float level: the validation loss is compared relatively.
        assert got.fitness == pytest.approx(val.pop("loss"), rel=1e-4)
        assert got.terms == pytest.approx(val, rel=1e-3, abs=5e-3)
        skip = set()
        for part in ("encoder", "decoder"):
            seq = getattr(alone, part)
            for k in range(len(seq) - 1):
                if isinstance(seq[k + 1], torch.nn.BatchNorm2d):
                    skip |= {f"{part}.{k}.bias", f"{part}.{k + 1}.running_mean"}
        member = run.stack.member_model(j).state_dict()
        for name, w in alone.state_dict().items():
            if name in skip or name.endswith("num_batches_tracked"):
                continue
            torch.testing.assert_close(member[name], w, rtol=1e-4, atol=1e-5, msg=name)


def test_evaluator_buckets_conv_structures(images):
    x, xv = images
    tasks = [
        Task(_conv_spec("conv-ae", ["relu", "relu"], [True, False], "adam", 0.001), 1, 1),
        Task(_conv_spec("conv-ae", ["tanh", "elu"], [True, False], "sgd", 0.01), 2, 1),
        Task(
            _conv_spec("conv-ae", ["relu", "relu"], [True, False], "adam", 0.001, filters=(4, 4)),
            3,
            1,
        ),
        Task(MIXED[0] | {"input_dim": 64}, 4, 1),
    ]
    ev = PopulationEvaluator(x, xv)
    results = dict(ev.evaluate(tasks))
    assert sorted(results) == [0, 1, 2, 3]
    assert ev.stats.conv_stacks == 2 and ev.stats.conv_members == 3
    for i, task in enumerate(tasks):
        ref, _ = train_candidate(task.spec, x, xv, epochs=1, seed=task.seed)
        assert results[i].status == ref.status == "ok"
        assert results[i].fitness == pytest.approx(ref.fitness, rel=1e-4)


def test_diverging_conv_member_fails_alone(images):
    x, xv = images
    good = _conv_spec("conv-ae", ["relu", "tanh"], [True, False], "sgd", 0.05)
    bomb = _conv_spec("conv-ae", ["elu", "elu"], [True, False], "sgd", 1e12)
    run = train_stack([good, bomb], [1, 2], x, xv, epochs=1, build=ConvStack)
    alone, _ = train_candidate(bomb, x, xv, epochs=1, seed=2)
    assert alone.status == "failed" and run.results[1].status == "failed"
    ref, _ = train_candidate(good, x, xv, epochs=1, seed=1)
    assert run.results[0].status == "ok"
    assert run.results[0].fitness == pytest.approx(ref.fitness, rel=1e-4)
