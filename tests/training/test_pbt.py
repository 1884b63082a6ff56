"""Population-based training: exploit copies exactly, checkpoints resume exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import dense_spec

from evoae.errors import EvoaeError
from evoae.families.io import weights_equal
from evoae.objectives import EvalSplit
from evoae.training.pbt import _make_member, _train_interval, exploit, explore, pbt_train

SPEC = dense_spec(input_dim=16, code_size=2, hidden=[[8, "relu"]], lr=0.01)
VAE = {
    "family": "conv-vae",
    "input_shape": [1, 8, 8],
    "code_size": 2,
    "blocks": [[4, 3, 2, "relu", False]],
    "dense": 0,
    "variational": True,
    "beta": 1.0,
    "optimizer": "adam",
    "lr": 0.003,
    "batch_size": 32,
}


def data(shape=(16,), n=160, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g), torch.rand(n // 2, *shape, generator=g)


def opt_tensors(opt):
    return {(pid, k): v for pid, st in opt.state_dict()["state"].items() for k, v in st.items()}


def test_exploit_copies_weights_and_optimizer_state_exactly():
    x, _ = data()
    a, b = _make_member(SPEC, 0, 0), _make_member(SPEC, 1, 0)
    _train_interval(a, x, 1, 0)
    _train_interval(b, x, 1, 0)
    b.hparams["lr"] = 0.005
    exploit(a, b)
    assert weights_equal(a.model, b.model)
    ta, tb = opt_tensors(a.optimizer), opt_tensors(b.optimizer)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert a.hparams == b.hparams and a.optimizer.param_groups[0]["lr"] == 0.005
    # deep copies: training the copy leaves the source untouched
    before = {k: v.clone() for k, v in tb.items()}
    w_before = {k: v.clone() for k, v in b.model.state_dict().items()}
    _train_interval(a, x, 1, 1)
    assert all(torch.equal(before[k], opt_tensors(b.optimizer)[k]) for k in before)
    assert all(torch.equal(w_before[k], v) for k, v in b.model.state_dict().items())


def test_explore_is_seeded_and_bounded():
    m1, m2 = _make_member(SPEC, 0, 0), _make_member(SPEC, 0, 0)
    explore(m1, np.random.default_rng(3))
    explore(m2, np.random.default_rng(3))
    assert m1.hparams == m2.hparams
    assert m1.hparams["lr"] in (pytest.approx(0.008), pytest.approx(0.012))
    assert m1.hparams["batch_size"] in (16, 32, 64)
    assert m1.optimizer.param_groups[0]["lr"] == m1.hparams["lr"]


def test_pbt_runs_and_journals(tmp_path):
    x, v = data()
    res = pbt_train(SPEC, EvalSplit(x), EvalSplit(v), copies=4, epochs=3, ready=1, seed=1)
    assert len(res.history) == 4 * 3
    exploited = [r for r in res.history if r["exploit"] is not None]
    assert len(exploited) == 2  # one bottom member per interval, no exploit after the last
    assert all(r["interval"] < 2 for r in exploited)
    last = [r for r in res.history if r["interval"] == 2]
    assert res.val_loss == min(r["val_loss"] for r in last)
    json.dumps(res.history)  # JSON-able


@pytest.mark.parametrize("spec,shape", [(SPEC, (16,)), (VAE, (1, 8, 8))])
def test_resume_after_kill_equals_uninterrupted(tmp_path, spec, shape):
    x, v = data(shape)
    kw = dict(copies=4, epochs=4, ready=1, seed=2)
    full = pbt_train(spec, x, v, **kw)

    def crash(done, history):
        if done == 2:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        pbt_train(spec, x, v, state_path=tmp_path / "ck", on_interval=crash, **kw)
    state = json.loads((tmp_path / "ck" / "state.json").read_text())
    assert state["intervals_done"] == 2
    resumed = pbt_train(spec, x, v, state_path=tmp_path / "ck", **kw)
    assert resumed.history == full.history
    assert resumed.best == full.best and resumed.hparams == full.hparams
    assert weights_equal(resumed.model, full.model)
    assert not list((tmp_path / "ck").glob("*.pkl"))


def test_resume_refuses_other_settings(tmp_path):
    x, v = data()
    pbt_train(SPEC, x, v, copies=2, epochs=1, ready=1, state_path=tmp_path / "ck")
    with pytest.raises(EvoaeError, match="other settings"):
        pbt_train(SPEC, x, v, copies=2, epochs=1, ready=1, seed=9, state_path=tmp_path / "ck")


def test_bad_arguments():
    x, v = data()
    with pytest.raises(EvoaeError):
        pbt_train(SPEC, x, v, copies=1)


KILL_SCRIPT = """
import sys, torch
sys.path.insert(0, "tests")  # test_pbt imports conftest, as pytest's rootdir does
from evoae.training.pbt import pbt_train
from tests.training.test_pbt import SPEC, data
from evoae.runs.killpoints import arm_forward
torch.set_num_threads(1)
arm_forward()
x, v = data()
pbt_train(SPEC, x, v, copies=4, epochs=4, ready=1, seed=2, state_path=sys.argv[1])
"""


@pytest.mark.parametrize("point", ["before_rename:state.json:2", "forward:50"])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, point):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "EVOAE_TEST_KILL_AT": point}
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), str(root)])
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "ck")], env=env, cwd=root
    )
    assert proc.returncode == -9  # SIGKILLed
    x, v = data()
    kw = dict(copies=4, epochs=4, ready=1, seed=2)
    resumed = pbt_train(SPEC, x, v, state_path=tmp_path / "ck", **kw)
    full = pbt_train(SPEC, x, v, **kw)
    assert resumed.history == full.history
    assert weights_equal(resumed.model, full.model)
    assert len(list((tmp_path / "ck").glob("weights-*.safetensors"))) == 1
