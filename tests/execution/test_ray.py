"""The Ray executor on a local Ray instance with 2 CPUs (started once for the module).

Workers train with one torch thread, so the in-process runs compared with them are made
with one thread too: the float results are then bit-identical, not merely close.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

ray = pytest.importorskip("ray")

from conftest import dense_spec  # noqa: E402

from evoae.execution.ray import RayEvaluator  # noqa: E402
from evoae.finish import derive_seed  # noqa: E402
from evoae.loop import search  # noqa: E402
from evoae.runs.journal import Journal  # noqa: E402
from evoae.runs.killpoints import ENV, ONCE_ENV  # noqa: E402
from evoae.settings import SearchSettings  # noqa: E402
from evoae.training import SequentialEvaluator, Task  # noqa: E402

TINY: dict[str, Any] = dict(
    limit=300,
    strategy="microbial",
    population=4,
    generations=4,
    concurrent=2,
    epochs=1,
    final_epochs=1,
    seed=7,
)
SPEC = dense_spec()


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _rows(run: Path) -> list[dict[str, Any]]:
    with Journal(run / "journal.sqlite") as j:
        return [r.comparable() for r in j.rows()]


def _data() -> tuple[Any, Any]:
    splits = SearchSettings.of(limit=300).load_splits()
    return splits.train.x, splits.val.x


def _tasks(n: int) -> list[Task]:
    return [Task(SPEC, derive_seed("ray-test", i), 1) for i in range(n)]


def test_a_search_on_ray_equals_the_in_process_search(tmp_path: Path, one_thread: None) -> None:
    on_ray = search("digits", out=tmp_path / "ray", executor="ray", workers=2, **TINY)
    inline = search("digits", out=tmp_path / "inline", **TINY)
    assert on_ray.n_evaluations == 4 + 4 and on_ray.n_trainings > 4
    assert _rows(tmp_path / "ray") == _rows(tmp_path / "inline")
    assert on_ray.best_genome == inline.best_genome
    assert on_ray.final == {**inline.final, "seconds": on_ray.final["seconds"]}
    assert ray.is_initialized(), "an evaluator must not shut down a Ray it did not start"


def test_a_worker_killed_mid_task_is_retried_and_changes_nothing(
    tmp_path: Path, one_thread: None
) -> None:
    marker = tmp_path / "killed"
    x_train, x_val = _data()
    tasks = _tasks(3)
    expected = dict(SequentialEvaluator(x_train, x_val).evaluate(tasks))
    # The first worker to reach its 40th module forward call (mid-training) is SIGKILLed.
    env = {"env_vars": {ENV: "forward:40", ONCE_ENV: str(marker)}}
    ev = RayEvaluator(x_train, x_val, workers=2, max_retries=2, runtime_env=env)
    got = dict(ev.evaluate(tasks))
    ev.close()
    assert marker.exists(), "no worker was killed: the test did not test anything"
    assert sorted(got) == [0, 1, 2]
    for i in got:
        assert got[i].status == "ok"
        assert (got[i].fitness, got[i].terms) == (expected[i].fitness, expected[i].terms)


def test_a_task_that_always_kills_its_worker_fails_after_bounded_retries() -> None:
    x_train, x_val = _data()
    env = {"env_vars": {ENV: "forward:1"}}  # every worker dies on its first forward call
    ev = RayEvaluator(x_train, x_val, workers=2, max_retries=1, runtime_env=env)
    got = dict(ev.evaluate(_tasks(1)))
    assert sorted(got) == [0]
    for r in got.values():
        assert r.status == "failed" and r.fitness == float("inf")
        assert "worker died 2 times" in (r.error or "")
        assert r.params > 0
