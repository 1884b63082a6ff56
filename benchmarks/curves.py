"""Learning curves: what recording them costs, and what a per-epoch validation loss would.

Two figures, each a same-run ratio:

* ``recording``: a small search (digits, code size 4, microbial GA, 4 epochs per
  candidate, inline executor) run with its curves journaled; the seconds spent
  measuring the validation loss after every epoch but the last
  (:class:`evoae.training.trainer.ValTrack`), building the curves (:func:`make_curve`)
  and writing them (:meth:`Journal._put_curve`), over the search's wall time.
* ``val per epoch``: for the candidates of that search, the seconds of one validation
  pass over the seconds of one training epoch, on the same data and thread (a check of
  the first figure that needs no timing inside the search).

    python benchmarks/curves.py              # about a minute on 2 cores
    python benchmarks/curves.py --dataset mnist --population 8 --generations 8
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
    ap.add_argument("--dataset", default="digits", help="digits, or mnist from ../shared/data")
    ap.add_argument("--population", type=int, default=20)
    ap.add_argument("--generations", type=int, default=60)
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
    tr.ValTrack.__call__ = timed(tr.ValTrack.__call__)  # type: ignore[method-assign]

    pop, gens = (4, 2) if args.smoke else (args.population, args.generations)
    epochs = 1 if args.smoke else args.epochs
    flat = dict(
        strategy="microbial", population=pop, generations=gens, epochs=epochs, min_steps=0,
        final_epochs=2, final_min_steps=0, seed=3, executor="inline",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        t0 = time.perf_counter()
        data = {}
        if args.dataset != "digits":  # the seed protocol's 10,000 / 5,000 split at 16x16
            data["data_dir"] = str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
        search(args.dataset, out=run, **flat, **data)
        wall = time.perf_counter() - t0
        with Journal(run / "journal.sqlite", readonly=True) as j:
            rows = [r for r in j.rows() if not r.cached and r.status == "ok"]
            curves = j.curves("search")
            s = SearchSettings.from_dict(j.get_meta("settings"))
        points = sum(len(c) for c in curves.values())
        print(
            f"recording (val per epoch, curves, SQLite): {spent[0] * 1e3:.1f} ms of "
            f"{wall:.2f} s search wall time "
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
            f"candidate a validation loss after every epoch adds about "
            f"{ratio * (epochs - 1) / (epochs + ratio):.1%} of training time"
        )


if __name__ == "__main__":
    main()
