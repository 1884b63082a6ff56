"""Benchmark: PBT, hybrid (probe) objectives and weight-space ES, on 16x16 MNIST.

Data: the published split (rows 0-9,999 of the MNIST training file train, the next
5,000 validate), the official 10,000 test images, resized to 16x16 (256 inputs).

(1) PBT vs plain retraining at equal compute, dense code-4 AE 256-128-64-4 (relu,
    linear code, sigmoid output, Adam 1e-3, batch 32): PBT with C copies x E epochs
    (ready every R epochs) against (a) the best by validation of C independent runs of
    E epochs and (b) one run of C x E epochs. Score: test MSE.
(1b) The same comparison for a CNN-VAE with latent 20 on 28x28 MNIST (continuous pixels,
    score: test negative ELBO in nats, as benchmarks/vae.py), reduced for a 2-core CPU:
    the first ``--vae-train`` training images, the next ``--vae-val`` to select copies
    and runs, a small fixed conv architecture (16 and 32 filters 3x3 stride 2, ReLU, no
    dense layer; Adam 1e-3, batch 128), PBT exploring lr, batch size and the KL weight.
(2) Linear-probe test accuracy of code-4 codes (logistic regression fitted on the
    training codes, scored on the test codes) for: (a) the AE selected for
    reconstruction and (b) the one selected by the ``probe`` objective among the same
    random candidates from the ``seed`` dense space (each trained briefly, scored on
    the validation split, the winner retrained), (c) PCA(4), (d) a hand-designed AE
    256-512-256-128-4 trained as long as the retrained winners.
(3) OpenAI-ES vs SGD (Adam) on a small dense AE 256-32-4 from the same initialisation at
    an equal number of rows passed forward; and ES fine-tuning of the (1) long-run model
    after per-tensor int8 (and int4) weight quantisation: the fraction of the
    quantisation loss (quantised minus float test MSE) that ES fine-tuning wins back,
    next to a control (the same ES budget on the float model).

    python benchmarks/hybrid.py --skip pbt probe es   # only (1b), the CNN-VAE PBT study
    python benchmarks/hybrid.py                # full run (~10 min at 1 thread)
    python benchmarks/hybrid.py --quick        # a quick look (~1 min)
    python benchmarks/hybrid.py --smoke        # seconds: checks it still runs
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evoae.data import load_dataset, load_test_dataset, seed_split
from evoae.families import build_model
from evoae.families.dense.space import dense_preset
from evoae.models import count_params
from evoae.objectives import EvalSplit
from evoae.objectives.probe import Probe, model_codes
from evoae.objectives.reconstruction import evaluate
from evoae.training.es import fake_quant, openai_es, quantize_model_, quantized_finetune
from evoae.training.pbt import pbt_train
from evoae.training.trainer import batch_order, fit, train_candidate

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: The smoke run reads MNIST too (tests/test_benchmarks_smoke.py skips without it).
NEEDS_SHARED_DATA = True
#: ``--smoke``: every part on a few hundred images with a handful of steps, so a test runs
#: it in seconds (the figures mean nothing).
SMOKE = {
    "train": 400, "val": 200, "test": 200, "copies": 2, "epochs": 1, "candidates": 2,
    "search_epochs": 1, "final_epochs": 1, "es_generations": 3, "es_population": 4,
    "q_generations": 2, "q_population": 4, "q_bits": [8], "vae_copies": 2, "vae_epochs": 1,
    "vae_train": 200, "vae_val": 100,
}  # fmt: skip

BASE = {
    "family": "dense",
    "input_dim": 256,
    "code_size": 4,
    "hidden": [[128, "relu"], [64, "relu"]],
    "code_activation": "linear",
    "output_activation": "sigmoid",
    "optimizer": "adam",
    "lr": 0.001,
    "batch_size": 32,
}


def dense(hidden: list[int], **kw: Any) -> dict[str, Any]:
    return {**BASE, "hidden": [[w, "relu"] for w in hidden], **kw}


def train(spec: dict[str, Any], x: torch.Tensor, epochs: int, seed: int) -> torch.nn.Module:
    m = build_model(spec, seed)
    fit(
        m,
        x,
        epochs=epochs,
        batch_size=int(spec["batch_size"]),
        optimizer=spec["optimizer"],
        lr=float(spec["lr"]),
        seed=seed,
    )
    return m.eval()


def probe_test_accuracy(tr: np.ndarray, ytr: np.ndarray, te: np.ndarray, yte: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(clf.fit(tr, ytr).score(te, yte))


def part_pbt(a: argparse.Namespace, xt, xv, xs, out: dict) -> torch.nn.Module:
    c, e, r = a.copies, a.epochs, a.ready
    print(f"\n(1) PBT vs plain retraining: {c} copies x {e} epochs (ready {r}) = {c * e} epochs")
    t0 = time.perf_counter()
    pbt = pbt_train(BASE, EvalSplit(xt), EvalSplit(xv), copies=c, epochs=e, ready=r, seed=a.seed)
    t_pbt = time.perf_counter() - t0
    pbt_test = evaluate(pbt.model, xs)["loss"]
    t0 = time.perf_counter()
    runs = [train_candidate(BASE, xt, xv, epochs=e, seed=a.seed + 100 + i) for i in range(c)]
    best = min(runs, key=lambda rm: rm[0].fitness)
    best_test = evaluate(best[1], xs)["loss"]
    t_best = time.perf_counter() - t0
    t0 = time.perf_counter()
    long = train(BASE, xt, c * e, a.seed + 200)
    long_test = evaluate(long, xs)["loss"]
    t_long = time.perf_counter() - t0
    print(
        f"  PBT best member (#{pbt.best}, lr {pbt.hparams['lr']:.2e}, batch "
        f"{pbt.hparams['batch_size']}): test MSE {pbt_test:.5f}  [{t_pbt:.0f} s]"
    )
    print(f"  best of {c} plain runs x {e} epochs: test MSE {best_test:.5f}  [{t_best:.0f} s]")
    print(f"  one plain run x {c * e} epochs:      test MSE {long_test:.5f}  [{t_long:.0f} s]")
    print(
        f"  ratios PBT / best-of-{c}: {pbt_test / best_test:.3f};"
        f"  PBT / long run: {pbt_test / long_test:.3f}  (< 1: PBT better)"
    )
    exploits = sum(row["exploit"] is not None for row in pbt.history)
    out["pbt"] = {
        "copies": c, "epochs": e, "ready": r, "pbt_test_mse": pbt_test,
        "best_of_plain_test_mse": best_test, "long_plain_test_mse": long_test,
        "ratio_vs_best_of": pbt_test / best_test, "ratio_vs_long": pbt_test / long_test,
        "pbt_hparams": pbt.hparams, "exploits": exploits,
        "seconds": {"pbt": t_pbt, "best_of": t_best, "long": t_long},
    }  # fmt: skip
    return long  # the best-trained float model: the subject of the quantisation study


VAE = {
    "family": "conv-vae",
    "input_shape": [1, 28, 28],
    "code_size": 20,
    "blocks": [[16, 3, 2, "relu", False], [32, 3, 2, "relu", False]],
    "dense": 0,
    "variational": True,
    "beta": 1.0,
    "optimizer": "adam",
    "lr": 0.001,
    "batch_size": 128,
}


def part_pbt_vae(a: argparse.Namespace, out: dict) -> None:
    c, e, r = a.vae_copies, a.vae_epochs, a.ready
    n, nv = a.vae_train, a.vae_val
    ds = load_dataset("mnist", data_dir=a.data_dir, image_size=(28, 28), limit=n + nv)
    test = load_test_dataset("mnist", data_dir=a.data_dir, image_size=(28, 28), limit=a.test)
    xt, xv = torch.from_numpy(ds.x[:n]), torch.from_numpy(ds.x[n : n + nv])
    xs = torch.from_numpy(test.x)
    print(
        f"\n(1b) CNN-VAE latent 20, 28x28 MNIST (train {n}, val {nv}, test {len(xs)}): "
        f"PBT {c} copies x {e} epochs (ready {r}) = {c * e} epochs"
    )

    def nats(m: torch.nn.Module) -> dict[str, float]:
        t = evaluate(m, xs)
        return {"neg_elbo": t["neg_elbo"], "recon": t["recon"], "kl": t["kl"]}

    t0 = time.perf_counter()
    pbt = pbt_train(VAE, EvalSplit(xt), EvalSplit(xv), copies=c, epochs=e, ready=r, seed=a.seed)
    t_pbt = time.perf_counter() - t0
    pbt_test = nats(pbt.model)
    t0 = time.perf_counter()
    runs = [train_candidate(VAE, xt, xv, epochs=e, seed=a.seed + 100 + i) for i in range(c)]
    best = min(runs, key=lambda rm: rm[0].fitness)
    best_test = nats(best[1])
    t_best = time.perf_counter() - t0
    t0 = time.perf_counter()
    long = train(VAE, xt, c * e, a.seed + 200)
    long_test = nats(long)
    t_long = time.perf_counter() - t0
    hp = ", ".join(f"{k} {v:.3g}" for k, v in pbt.hparams.items())
    for name, t, sec in (
        (f"PBT best member (#{pbt.best}, {hp})", pbt_test, t_pbt),
        (f"best of {c} plain runs x {e} epochs", best_test, t_best),
        (f"one plain run x {c * e} epochs", long_test, t_long),
    ):
        print(f"  {name}: test {t['neg_elbo']:.2f} nats (recon {t['recon']:.2f}) [{sec:.0f} s]")
    rb = pbt_test["neg_elbo"] / best_test["neg_elbo"]
    rl = pbt_test["neg_elbo"] / long_test["neg_elbo"]
    print(f"  ratios PBT / best-of-{c}: {rb:.3f};  PBT / long run: {rl:.3f}  (< 1: PBT better)")
    out["pbt_vae"] = {
        "copies": c, "epochs": e, "ready": r, "train": n, "val": nv, "spec": VAE,
        "pbt_test": pbt_test, "best_of_plain_test": best_test, "long_plain_test": long_test,
        "ratio_vs_best_of": rb, "ratio_vs_long": rl, "pbt_hparams": pbt.hparams,
        "exploits": sum(row["exploit"] is not None for row in pbt.history),
        "seconds": {"pbt": t_pbt, "best_of": t_best, "long": t_long},
    }  # fmt: skip


def part_probe(a: argparse.Namespace, sp, xt, xv, xs, out: dict) -> None:
    print(
        f"\n(2) linear probe on code-4 codes ({a.candidates} random {a.preset}-space candidates "
        f"x {a.search_epochs} epochs, winners retrained {a.final_epochs} epochs)"
    )
    ytr, yte = sp.train.y, sp.test.y
    val = EvalSplit(xv, torch.from_numpy(sp.val.y))
    space = dense_preset(a.preset, 256, 4)
    rng = np.random.default_rng(a.seed)
    probe = Probe(seed=a.seed)
    rows = []
    t0 = time.perf_counter()
    for i in range(a.candidates):
        spec = space.decode(space.sample(rng))
        res, model = train_candidate(spec, xt, xv, epochs=a.search_epochs, seed=a.seed + i)
        acc = probe.score(model, val).terms["probe_accuracy"] if math.isfinite(res.fitness) else 0
        rows.append({"spec": spec, "seed": a.seed + i, "val_mse": res.fitness, "val_probe": acc})
        print(
            f"  cand {i:2d}: val MSE {res.fitness:.4f}  val probe {acc:.3f}  "
            f"{[h[0] for h in spec['hidden']]} {spec['code_activation']}/"
            f"{spec['output_activation']} {spec['optimizer']}"
        )
    t_search = time.perf_counter() - t0
    by_rec = min(rows, key=lambda r: r["val_mse"])
    by_probe = max(rows, key=lambda r: r["val_probe"])

    def final(spec: dict[str, Any], seed: int) -> tuple[float, float]:
        m = train(spec, xt, a.final_epochs, seed)
        acc = probe_test_accuracy(model_codes(m, xt).numpy(), ytr, model_codes(m, xs).numpy(), yte)
        return acc, evaluate(m, xs)["mse"]

    t0 = time.perf_counter()
    rec_acc, rec_mse = final(by_rec["spec"], by_rec["seed"])
    prb_acc, prb_mse = final(by_probe["spec"], by_probe["seed"])
    hand_acc, hand_mse = final(dense([512, 256, 128]), a.seed)
    from sklearn.decomposition import PCA

    pca = PCA(4, random_state=0).fit(xt.numpy())
    pca_acc = probe_test_accuracy(pca.transform(xt.numpy()), ytr, pca.transform(xs.numpy()), yte)
    t_final = time.perf_counter() - t0
    print("  test linear-probe accuracy (test MSE):")
    print(f"    (a) selected for reconstruction: {rec_acc:.4f} ({rec_mse:.5f})")
    print(f"    (b) selected for probe:          {prb_acc:.4f} ({prb_mse:.5f})")
    print(f"    (c) PCA(4):                      {pca_acc:.4f}")
    print(f"    (d) hand AE 256-512-256-128-4:   {hand_acc:.4f} ({hand_mse:.5f})")
    print(
        f"  (b) - (c) = {100 * (prb_acc - pca_acc):+.1f} points (target >= +15);"
        f"  (b) - (a) = {100 * (prb_acc - rec_acc):+.1f} points (target >= +5)"
    )
    print(f"  [search {t_search:.0f} s, final {t_final:.0f} s]")
    out["probe"] = {
        "recon_selected": {"test_probe": rec_acc, "test_mse": rec_mse, "spec": by_rec["spec"]},
        "probe_selected": {"test_probe": prb_acc, "test_mse": prb_mse, "spec": by_probe["spec"]},
        "pca4": {"test_probe": pca_acc},
        "hand": {"test_probe": hand_acc, "test_mse": hand_mse},
        "candidates": rows,
        "seconds": {"search": t_search, "final": t_final},
    }


def sgd_steps(model, x: torch.Tensor, steps: int, batch: int, lr: float, seed: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-7)
    model.train()
    done = 0
    while done < steps:
        for perm in batch_order(x.shape[0], 1, seed + done):
            for start in range(0, x.shape[0], batch):
                if done == steps:
                    break
                loss = model(x[perm[start : start + batch]]).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done += 1
    model.eval()


def part_es(a: argparse.Namespace, xt, xv, xs, plain: torch.nn.Module, out: dict) -> None:
    spec = dense([32], lr=0.001)
    init = build_model(spec, a.seed)
    g, p, b = a.es_generations, a.es_population, a.es_batch
    print(f"\n(3a) ES vs SGD, AE 256-32-4 ({count_params(init)} weights), same init")
    t0 = time.perf_counter()
    es = openai_es(init, xt, generations=g, population=p, sigma=a.es_sigma, lr=a.es_lr,
                   batch_size=b, keep_best=False, seed=a.seed)  # fmt: skip
    t_es = time.perf_counter() - t0
    es_test = evaluate(es.model, xs)["loss"]
    steps = max(1, round(es.forwards / 32))
    t0 = time.perf_counter()
    sgd = copy.deepcopy(init)
    sgd_steps(sgd, xt, steps, 32, 0.001, a.seed)
    t_sgd = time.perf_counter() - t0
    sgd_test = evaluate(sgd, xs)["loss"]
    init_test = evaluate(init, xs)["loss"]
    print(
        f"  rows forward: ES {es.forwards:,} ({g} gens x {p}+1 x {b} rows) = SGD {steps:,} "
        f"steps x 32 ({steps * 32 / len(xt):.1f} epochs)"
    )
    print(
        f"  test MSE: init {init_test:.5f}  ES {es_test:.5f} [{t_es:.0f} s]  "
        f"SGD {sgd_test:.5f} [{t_sgd:.0f} s]  ratio ES/SGD {es_test / sgd_test:.2f}"
    )
    out["es_vs_sgd"] = {
        "params": count_params(init), "forwards": es.forwards, "sgd_steps": steps,
        "init_test_mse": init_test, "es_test_mse": es_test, "sgd_test_mse": sgd_test,
        "ratio": es_test / sgd_test, "seconds": {"es": t_es, "sgd": t_sgd},
        "es": {"generations": g, "population": p, "batch": b, "sigma": a.es_sigma, "lr": a.es_lr},
    }  # fmt: skip

    # Control: the same ES budget on the float model, no quantisation. ES keeps training
    # an under-trained model, so part of any "recovery" is plain extra training.
    t0 = time.perf_counter()
    ctrl = openai_es(
        plain, xt, generations=a.q_generations, population=a.q_population, sigma=a.q_sigma,
        lr=a.q_lr, weight_decay=0.0, batch_size=a.q_batch, seed=a.seed,
    )  # fmt: skip
    float_es = evaluate(ctrl.model, xs)["loss"]
    print(
        f"\n(3b) control: float model + the same ES budget: test MSE {float_es:.6f} "
        f"(float {evaluate(plain, xs)['loss']:.6f}) [{time.perf_counter() - t0:.0f} s]"
    )
    out["float_es_test_mse"] = float_es
    for bits in a.q_bits:
        part_quant(a, xt, xv, xs, plain, bits, float_es, out)


def part_quant(
    a: argparse.Namespace, xt, xv, xs, plain, bits: int, float_es: float, out: dict
) -> None:
    print(
        f"\n(3b) int{bits} (per-tensor symmetric, weight tensors) + ES fine-tuning of the "
        f"(1) long-run model ({count_params(plain)} weights)"
    )
    tf = partial(fake_quant, bits=bits)
    t0 = time.perf_counter()
    q = quantized_finetune(  # ES on training minibatches; kept only if better on val
        plain, xt, xv, transform=tf,
        generations=a.q_generations, population=a.q_population,
        sigma=a.q_sigma, lr=a.q_lr, batch_size=a.q_batch, seed=a.seed,
    )  # fmt: skip
    t_q = time.perf_counter() - t0
    f_test = evaluate(plain, xs)["loss"]
    q_test = evaluate(quantize_model_(copy.deepcopy(plain), tf), xs)["loss"]
    t_test = evaluate(q.model, xs)["loss"]
    print(
        f"  test MSE: float {f_test:.6f}  int{bits} {q_test:.6f}  "
        f"int{bits}+ES {t_test:.6f}  [{t_q:.0f} s]"
    )
    gap = q_test - f_test
    recovered = (q_test - t_test) / gap if gap > 0 else math.nan
    if gap > 0:
        print(
            f"  quantisation loss recovered on test: {100 * recovered:.0f}% "
            f"(val: {100 * q.recovered:.0f}%; target >= 50%); "
            f"int{bits}+ES / float+ES: {t_test / float_es:.4f}"
        )
    else:
        print(f"  no quantisation loss to recover (int{bits} - float = {gap:+.2e} test MSE)")
    out[f"int{bits}"] = {
        "float_test_mse": f_test, "quant_test_mse": q_test, "quant_es_test_mse": t_test,
        "recovered_test": recovered, "recovered_val": q.recovered, "seconds": t_q,
        "float_es_test_mse": float_es,
        "es": {"generations": a.q_generations, "population": a.q_population,
               "sigma": a.q_sigma, "lr": a.q_lr, "batch": a.q_batch},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR)
    ap.add_argument("--quick", action="store_true", help="small sizes: a quick look")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    ap.add_argument("--train", type=int, default=10000, help="training rows of the split")
    ap.add_argument("--val", type=int, default=5000, help="validation rows of the split")
    ap.add_argument("--test", type=int, default=None, help="test rows [default: all]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--ready", type=int, default=1)
    ap.add_argument("--vae-copies", type=int, default=4)
    ap.add_argument("--vae-epochs", type=int, default=4)
    ap.add_argument("--vae-train", type=int, default=10000)
    ap.add_argument("--vae-val", type=int, default=2000)
    ap.add_argument("--candidates", type=int, default=12)
    ap.add_argument("--preset", default="seed", choices=["seed", "extended"])
    ap.add_argument("--search-epochs", type=int, default=2)
    ap.add_argument("--final-epochs", type=int, default=10)
    ap.add_argument("--es-generations", type=int, default=300)
    ap.add_argument("--es-population", type=int, default=40)
    ap.add_argument("--es-batch", type=int, default=100)
    ap.add_argument("--es-sigma", type=float, default=0.02)
    ap.add_argument("--es-lr", type=float, default=0.01)
    ap.add_argument("--q-generations", type=int, default=150)
    ap.add_argument("--q-population", type=int, default=40)
    ap.add_argument("--q-batch", type=int, default=1000)
    ap.add_argument("--q-sigma", type=float, default=0.003)
    ap.add_argument("--q-lr", type=float, default=0.001)
    ap.add_argument("--q-bits", type=int, nargs="+", default=[8, 4])
    ap.add_argument("--skip", nargs="*", default=[], choices=["pbt", "vae", "probe", "es"])
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args(argv)
    if a.quick:
        a.copies, a.epochs, a.candidates, a.search_epochs, a.final_epochs = 4, 2, 3, 1, 1
        a.es_generations, a.q_generations = 10, 5
        a.vae_copies, a.vae_epochs, a.vae_train, a.vae_val = 2, 1, 500, 200
    if a.smoke:
        vars(a).update(SMOKE)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ds = load_dataset("mnist", data_dir=a.data_dir, image_size=(16, 16), limit=a.train + a.val)
    test = load_test_dataset("mnist", data_dir=a.data_dir, image_size=(16, 16), limit=a.test)
    sp = seed_split(ds, n_train=a.train, n_val=a.val, test=test)
    xt, xv, xs = (torch.from_numpy(d.x).reshape(len(d), -1) for d in (sp.train, sp.val, sp.test))
    print(f"16x16 MNIST: train {len(xt)}, val {len(xv)}, test {len(xs)}; torch threads 1")
    out: dict[str, Any] = {"args": {k: str(v) for k, v in vars(a).items()}}
    plain = None
    if "pbt" not in a.skip:
        plain = part_pbt(a, xt, xv, xs, out)
    if "vae" not in a.skip:
        part_pbt_vae(a, out)
    if "probe" not in a.skip:
        part_probe(a, sp, xt, xv, xs, out)
    if "es" not in a.skip:
        if plain is None:
            plain = train(BASE, xt, a.copies * a.epochs, a.seed + 200)  # = the long run
        part_es(a, xt, xv, xs, plain, out)
    out["seconds"] = time.perf_counter() - t0
    print(f"\ntotal {out['seconds']:.0f} s")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
