"""The final training's plateau rule: learning-rate cuts, then a stop (issue 19)."""

from __future__ import annotations

import torch
from conftest import dense_spec
from torch import nn

from evoae.families import build_model
from evoae.training.budget import PLATEAU_STEPS, plateau_epochs
from evoae.training.optim import make_optimizer
from evoae.training.trainer import LR_CUT, _Plateau, fit


def _scripted(values: list[float]):
    it = iter(values)
    return lambda: next(it)


def test_each_plateau_cuts_the_learning_rate_until_the_cuts_run_out():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # initial 1.0; improves at epoch 1, then flat: plateaus of 2 epochs from epoch 1.
    p = _Plateau(
        model,
        _scripted([1.0, 0.5] + [0.5] * 20),
        patience=2,
        min_steps=10**9,  # with cuts the step floor does not hold a converged training
        steps_per_epoch=1,
        opt=opt,
        lr_cuts=2,
    )
    stops = [p(e) for e in range(1, 8)]
    # epoch 3: first cut; epoch 5: second cut; epoch 7: the third plateau stops.
    assert stops == [False, False, False, False, False, False, True]
    assert opt.param_groups[0]["lr"] == 0.1 * LR_CUT**2
    assert p.best_epoch == 1 and p.cuts == 2


def test_without_cuts_the_old_rule_holds():
    model = nn.Linear(2, 2)
    p = _Plateau(
        model, _scripted([1.0, 0.9] + [0.95] * 10), patience=2, min_steps=4, steps_per_epoch=1
    )
    # plateau from epoch 1 at epoch 3, but the step floor (4 steps) holds it to epoch 4.
    assert [p(e) for e in range(1, 5)] == [False, False, False, True]


def test_a_better_loss_by_noise_keeps_the_weights_but_not_the_plateau_open():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    values = [1.0, 0.5, 0.5 * (1 - 1e-6), 0.5 * (1 - 2e-6), 0.4]
    p = _Plateau(
        model, _scripted(values), patience=2, min_steps=0, steps_per_epoch=1, opt=opt, lr_cuts=1
    )
    assert p(1) is False and p(2) is False
    assert p.best_epoch == 2  # the weights of the (barely) better epoch are kept
    assert p(3) is False and opt.param_groups[0]["lr"] == 0.1 * LR_CUT  # still a plateau
    assert p(4) is False and p.best_epoch == 4


def test_the_kernel_trainer_follows_a_cut_learning_rate():
    """The dense kernel reads the learning rate every epoch: a rate cut to 0 freezes the
    weights, exactly as torch.optim would."""
    spec = dense_spec(lr=0.01)
    x = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
    for trainer in ("kernel", "autograd"):
        model = build_model(spec, 0)
        opt = make_optimizer("adam", model.parameters(), 0.01)
        after: list[dict[str, torch.Tensor]] = []

        def freeze(done: int, model=model, opt=opt, after=after) -> bool:
            after.append({k: v.clone() for k, v in model.state_dict().items()})
            opt.param_groups[0]["lr"] = 0.0
            return False

        fit(model, x, epochs=3, batch_size=32, optimizer="adam", lr=0.01, seed=0,
            after_epoch=freeze, opt=opt, trainer=trainer)  # fmt: skip
        assert all(torch.equal(after[0][k], after[2][k]) for k in after[0]), trainer
        assert not all(torch.equal(after[0][k], v) for k, v in build_model(spec, 0)
                       .state_dict().items()), trainer  # fmt: skip


def test_a_plateau_lasts_enough_steps_only_with_cuts():
    assert plateau_epochs(5, 0, 1000, 32) == 5
    assert plateau_epochs(0, 5, 1000, 32) == 0  # patience 0: no plateau rule at all
    assert plateau_epochs(5, 5, 1000, 32) == -(-PLATEAU_STEPS // 32)  # 32 steps an epoch
    assert plateau_epochs(5, 5, 100_000, 32) == 5
