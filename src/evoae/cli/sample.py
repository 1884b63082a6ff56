"""``evoae sample``: draw images from the prior of a run's best VAE."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from evoae.cli import add_command, positive_int
from evoae.errors import EvoaeError
from evoae.seeds import check_seed

#: Most images one ``evoae sample`` draws.
MAX_SAMPLES = 4096
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "sample",
        description="Decode N draws from the standard normal prior with the best model of a "
        "run (a conv-vae) and save them as an image grid.",
    )
    p.add_argument("run", metavar="RUN", help="run folder (or a saved model folder)")
    p.add_argument("--n", type=positive_int, default=64, help="number of samples [default: 64]")
    p.add_argument(
        "--out",
        default="samples.png",
        help="PNG file to write, or a folder (existing, or ending in /) to write samples.png "
        "into [default: samples.png]",
    )
    p.add_argument("--ncols", type=positive_int, default=8, help="images per grid row [default: 8]")
    p.add_argument(
        "--seed", type=int, default=None, help="noise seed [default: the model's own seed]"
    )
    p.set_defaults(func=run)


def model_folder(run: str | Path) -> Path:
    """The saved model of a run folder, or ``run`` itself when it is a model folder."""
    from evoae.families.io import JSON_NAME
    from evoae.runs import folder as rf

    run = Path(run)
    if (run / JSON_NAME).is_file():
        return run
    if (run / rf.MODEL_DIR / JSON_NAME).is_file():
        return run / rf.MODEL_DIR
    raise EvoaeError(f"{run} holds no saved model: pass a finished run folder or its model/")


def out_path(out: str) -> Path:
    """The PNG to write: ``out``, or ``out/samples.png`` when ``out`` names a folder."""
    from evoae.runs.folder import check_path
    from evoae.runs.guard import check_new_file

    path = check_path(out, "--out")
    try:
        is_dir = path.is_dir()
    except OSError as e:
        raise EvoaeError(f"cannot use --out {out} ({e.strerror}): choose another path") from None
    if is_dir or out.endswith(("/", os.sep)):
        return check_new_file(path / "samples.png")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise EvoaeError(
            f"--out {out} is not an image file ({', '.join(IMAGE_SUFFIXES)}): name it "
            "NAME.png or pass a folder/"
        )
    return check_new_file(path)


def run(args: argparse.Namespace) -> int:
    from evoae.families.io import load_model
    from evoae.plots.figures import plot_image_grid

    dest = out_path(args.out)
    model = load_model(model_folder(args.run))
    if not callable(getattr(model, "sample", None)) or not getattr(model, "variational", False):
        raise EvoaeError(
            f"the model in {args.run} ({model.spec.get('family')}) has no prior to sample "
            "from: only conv-vae runs can be sampled"
        )
    if args.n > MAX_SAMPLES:
        raise EvoaeError(f"--n {args.n} is too many samples (at most {MAX_SAMPLES})")
    if args.seed is not None:
        check_seed(args.seed, "--seed")
    images = model.sample(args.n, seed=args.seed).numpy()
    try:
        out = plot_image_grid(
            images, dest, ncols=min(args.ncols, args.n), title=f"{args.n} samples from the prior"
        )
    except OSError as e:
        raise EvoaeError(f"cannot write {dest} ({e.strerror or e}): choose another --out") from None
    print(out)
    return 0
