"""Multi-fidelity: the ASHA promotion rule and rung training that continues a candidate."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import dense_spec

from evoae.errors import EvoaeError
from evoae.evolution.asha import Job, SuccessiveHalving, rung_epochs
from evoae.training import train_candidate
from evoae.training.rungs import train_rung


def test_rungs():
    assert rung_epochs(1, 3, 4) == [1, 3, 4]
    assert rung_epochs(1, 3, 9) == [1, 3, 9]
    assert rung_epochs(1, 2, 8) == [1, 2, 4, 8]
    assert rung_epochs(2, 3, 2) == [2]
    with pytest.raises(EvoaeError, match="eta"):
        rung_epochs(1, 1, 4)


def _play(sh: SuccessiveHalving, losses: dict[int, list[float]], n: int) -> list[Job]:
    jobs = []
    for _ in range(n):
        job = sh.next_job()
        jobs.append(job)
        sh.report(job, losses[job.candidate][job.rung])
    return jobs


def test_asha_promotes_the_best_third_as_soon_as_a_rung_allows():
    # candidate c: loss at rung k is (10 - c) / (k + 1) except failures; c = 5 is best.
    losses = {c: [(10 - c) / (k + 1) for k in range(3)] for c in range(40)}
    losses[4] = [math.inf] * 3
    sh = SuccessiveHalving(min_epochs=1, eta=3, max_epochs=4)
    jobs = _play(sh, losses, 4)
    # Three results at rung 0: the best one (candidate 2) goes on at once, from epoch 1.
    assert jobs[3] == Job(candidate=2, rung=1, epochs=3, resume_epochs=1)
    jobs += _play(sh, losses, 30)
    promoted = [j for j in jobs if j.rung > 0]
    assert all(j.resume_epochs == sh.rungs[j.rung - 1] for j in promoted)
    assert 4 not in {j.candidate for j in promoted}  # a failed candidate never moves up
    # Every promotion out of rung k was in the top 1/eta of rung k when it happened.
    assert sh.best() is not None and sh.best()[1] == 2
    assert sh.epochs_spent() == sum(j.epochs - j.resume_epochs for j in jobs)


def test_asha_state_round_trips_through_json():
    losses = {c: [1.0 / (c + 1), 0.5 / (c + 1), 0.1 / (c + 1)] for c in range(60)}
    a = SuccessiveHalving()
    unbroken = _play(a, losses, 30)
    b = SuccessiveHalving()
    first = _play(b, losses, 12)
    c = SuccessiveHalving()
    c.load_state_dict(json.loads(json.dumps(b.state_dict())))
    assert first + _play(c, losses, 18) == unbroken
    with pytest.raises(EvoaeError, match="rungs"):
        SuccessiveHalving(max_epochs=9).load_state_dict(b.state_dict())


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_promoted_candidate_continues_from_its_weights_and_optimizer(tmp_path, optimizer):
    g = torch.Generator().manual_seed(0)
    x, v = torch.rand(160, 64, generator=g), torch.rand(40, 64, generator=g)
    spec = dense_spec(optimizer=optimizer, lr=0.01 if optimizer == "sgd" else 0.001)
    ckpt = tmp_path / "rungs" / "7"
    r1, _ = train_rung(spec, x, v, epochs=1, seed=3, save=ckpt)
    assert ckpt.with_suffix(".safetensors").is_file() and r1.terms["epochs"] == 1
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    assert meta["epochs"] == 1
    r3, m3 = train_rung(spec, x, v, epochs=3, seed=3, resume=ckpt, save=ckpt)
    direct, md = train_candidate(spec, x, v, epochs=3, seed=3)
    # Continued = trained 3 epochs in one go: same weights, same score.
    for a, b in zip(m3.state_dict().values(), md.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert r3.fitness == direct.fitness and r3.train_loss == direct.train_loss
    assert json.loads(ckpt.with_suffix(".json").read_text())["epochs"] == 3
    with pytest.raises(ValueError, match="more than"):
        train_rung(spec, x, v, epochs=2, seed=3, resume=ckpt)


def test_a_pca_seeded_rung_starts_at_pca_like_a_plain_training():
    from evoae.families.dense.space import DenseSpace

    spec = DenseSpace(16, 2, pca_init=True).pca_spec()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(120, 16, generator=g)
    train, val = x[:80], x[80:]
    plain, _ = train_candidate(spec, train, val, epochs=1, seed=3)
    rung, _ = train_rung(spec, train, val, epochs=1, seed=3)
    assert rung.fitness == plain.fitness
