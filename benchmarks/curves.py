"""Learning curves: what recording them costs, and what a per-epoch validation loss would.

Two figures, each a same-run ratio:

* ``recording``: a small search (digits, code size 4, microbial GA, inline executor) run
  with its curves journaled; the seconds spent building and writing curves (timed
  around :meth:`Journal._put_curve` and :func:`make_curve`) over the search's wall time.
* ``val per epoch``: for the candidates of that search, the seconds of one validation
  pass over the seconds of one training epoch, on the same data and thread: the share
  of search time a validation loss after every epoch (not only the last) would add is
  ``ratio * (epochs - 1) / epochs``. The search records the training loss every epoch
  and the validation loss at the end; the final training, which scores every epoch
  for its plateau stop anyway, records both every epoch.

    python benchmarks/curves.py              # about a minute on 2 cores
    python benchmarks/curves.py --smoke      # seconds: checks it still runs
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)

    import evoae.runs.curves as lc
    import evoae.training.trainer as tr
    from evoae.loop import search
    from evoae.objectives import Reconstruction
    from evoae.runs.journal import Journal
    from evoae.settings import SearchSettings
    from evoae.training.trainer import as_split, batch_order, epoch_runner

    spent = [0.0]

    def timed(fn):  # noqa: ANN001, ANN202
        def wrap(*a, **kw):  # noqa: ANN002, ANN003, ANN202
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[0] += time.perf_counter() - t

        return wrap

    Journal._put_curve = staticmethod(timed(Journal._put_curve))  # type: ignore[method-assign]
    tr.make_curve = timed(lc.make_curve)

    pop, gens = (4, 2) if args.smoke else (20, 60)
    epochs = 1 if args.smoke else args.epochs
    flat = dict(
        population=pop, generations=gens, epochs=epochs, min_steps=0, final_epochs=2,
        final_min_steps=0, seed=3, executor="inline",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        t0 = time.perf_counter()
        search("digits", out=run, **flat)
        wall = time.perf_counter() - t0
        with Journal(run / "journal.sqlite", readonly=True) as j:
            rows = [r for r in j.rows() if not r.cached and r.status == "ok"]
            curves = j.curves("search")
            s = SearchSettings.from_dict(j.get_meta("settings"))
        points = sum(len(c) for c in curves.values())
        print(
            f"recording: {spent[0] * 1e3:.1f} ms of {wall:.2f} s search wall time "
            f"(ratio {spent[0] / wall:.4%}); {len(curves)} curves, {points} points"
        )

        splits = s.load_splits()
        train, val = as_split(splits.train), as_split(splits.val)
        objective = Reconstruction()
        from evoae.families import build_model
        from evoae.training.optim import make_optimizer
        from evoae.training.trainer import initial_state

        t_train = t_val = 0.0
        for r in rows[: 4 if args.smoke else 30]:
            model = build_model(r.spec, r.seed, init=initial_state(r.spec, train.x))
            opt = make_optimizer(r.spec["optimizer"], model.parameters(), float(r.spec["lr"]))
            run_epoch = epoch_runner(model, opt, int(r.spec["batch_size"]), s.training.trainer)
            perm = batch_order(train.x.shape[0], 1, r.seed)[0]
            t = time.perf_counter()
            run_epoch(train.x, perm)
            t_train += time.perf_counter() - t
            model.eval()
            t = time.perf_counter()
            objective.score(model, val)
            t_val += time.perf_counter() - t
        ratio = t_val / t_train
        print(
            f"val per epoch: one validation pass = {ratio:.3f} x one training epoch "
            f"({len(train.x)} train / {len(val.x)} val rows); at {epochs} epochs per "
            f"candidate a validation loss every epoch would add about "
            f"{ratio * (epochs - 1) / (epochs + ratio):.1%} of training time"
        )


if __name__ == "__main__":
    main()
