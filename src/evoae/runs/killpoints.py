"""Deterministic crash points for the kill tests: SIGKILL this process at a named point.

Crash safety is only believable if a run can be killed at *any* instant and resumed.
Timing a ``kill`` from outside hits random places; these hooks hit chosen ones. With
``EVOAE_TEST_KILL_AT="NAME:N"`` in the environment, the N-th call of
``kill_point("NAME")`` kills the process with SIGKILL (no cleanup, no ``finally``), as a
power cut or the OOM killer would. Unset (always, outside tests), a call is one
environment lookup. ``EVOAE_TEST_KILL_ONCE=PATH`` limits the kill to the first process
that gets there (it creates ``PATH``), so a retried worker survives.
``EVOAE_TEST_KILL_SIGNAL=SIGSTOP`` stops the process there instead (a test then acts on
the world, e.g. kills a Ray node, and sends SIGCONT).

Points used by evoae: ``trained`` (a result arrived, not yet journaled), ``appended``
(a row was committed, the strategy not yet told), ``before_rename:FILE`` (an atomic
write's temporary file is complete but not yet renamed over ``FILE``) and ``forward``
(every ``nn.Module`` forward call once :func:`arm_forward` ran: mid-training; the
dense kernel counts the calls its step stands for, :func:`forward_calls`).
"""

from __future__ import annotations

import os
import signal

ENV = "EVOAE_TEST_KILL_AT"
ONCE_ENV = "EVOAE_TEST_KILL_ONCE"
SIGNAL_ENV = "EVOAE_TEST_KILL_SIGNAL"

_counts: dict[str, int] = {}
_armed = False


def _target() -> tuple[str, int] | None:
    spec = os.environ.get(ENV, "").strip()
    if not spec:
        return None
    name, _, n = spec.rpartition(":")
    return name, int(n)


def kill_point(name: str) -> None:
    """SIGKILL this process if ``EVOAE_TEST_KILL_AT`` names this point and count."""
    target = _target()
    if target is None or target[0] != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] != target[1]:
        return
    once = os.environ.get(ONCE_ENV)
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    stop = os.environ.get(SIGNAL_ENV) == "SIGSTOP"
    os.kill(os.getpid(), signal.SIGSTOP if stop else signal.SIGKILL)


def arm_forward() -> None:
    """Count module forward calls as point ``forward`` when the target names it."""
    global _armed
    target = _target()
    if _armed or target is None or target[0] != "forward":
        return
    import torch  # only under a kill test

    torch.nn.modules.module.register_module_forward_hook(lambda *_: kill_point("forward"))
    _armed = True


def forward_calls(n: int) -> None:
    """Count ``n`` module forward calls at once, once :func:`arm_forward` ran: a training
    step that calls no module (the dense kernel) stands for the calls autograd makes."""
    if _armed:
        for _ in range(n):
            kill_point("forward")
