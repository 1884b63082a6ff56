"""Record the journals of small seeded searches (run with the evoae whose behaviour is kept).

``tests/loop/golden/golden_journal.json`` was written by this script with evoae 0.1, before the
open-core change; tests/loop/test_open_core.py checks that today's code writes the same rows.
Since evoae 0.2 the JSON's settings also turn off what later versions do by default and
0.1 did not (the PCA seed and fallback, the step floors, the final plateau stop):
``OFF_SINCE_0_1`` below; the recorded rows are untouched.
"""

import json
import sqlite3
import sys

import torch

import evoae

CASES = {
    "dense_seed": dict(
        strategy="microbial", population=6, generations=8, epochs=1, final_epochs=1, seed=3
    ),
    "dense_ext_k2": dict(
        preset="extended",
        strategy="microbial",
        population=6,
        generations=6,
        epochs=1,
        final_epochs=1,
        seed=5,
        concurrent=2,
    ),
    "dense_reeval": dict(
        strategy="microbial",
        population=4,
        generations=3,
        epochs=1,
        final_epochs=1,
        seed=1,
        reevaluate=True,
    ),
}


#: Added to every case's settings in the JSON: evoae 0.1's behaviour with today's code.
OFF_SINCE_0_1 = dict(
    pca_seed=False,
    pca_fallback=False,
    min_steps=0,
    final_min_steps=0,
    final_patience=0,
    residual=False,
)


def journal_rows(run: str) -> list[dict]:
    """The journal's rows without wall-clock seconds, in id order."""
    con = sqlite3.connect(f"{run}/journal.sqlite")
    cols = [c[1] for c in con.execute("PRAGMA table_info(evaluations)")]
    rows = [dict(zip(cols, r, strict=True)) for r in con.execute("SELECT * FROM evaluations")]
    con.close()
    for row in rows:
        row.pop("seconds")
    return sorted(rows, key=lambda r: r["id"])


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = {}
    for name, kw in CASES.items():
        r = evoae.search("digits", out=f"{sys.argv[1]}/run_{name}", overwrite=True, **kw)
        rows = journal_rows(f"{sys.argv[1]}/run_{name}")
        out[name] = {"settings": kw, "rows": rows, "final_val": r.final["val_loss"]}
    json.dump(out, open(f"{sys.argv[1]}/golden.json", "w"), indent=1, sort_keys=True)
