"""Record journals of small seeded searches with the pre-refactor code."""
import json, sqlite3, sys
import torch
torch.set_num_threads(1)
import evoae
cases = {
  "dense_seed": dict(population=6, generations=8, epochs=1, final_epochs=1, seed=3),
  "dense_ext_k2": dict(preset="extended", population=6, generations=6, epochs=1, final_epochs=1, seed=5, concurrent=2),
  "dense_reeval": dict(population=4, generations=3, epochs=1, final_epochs=1, seed=1, reevaluate=True),
}
out = {}
for name, kw in cases.items():
    r = evoae.search("digits", out=f"/tmp/golden/run_{name}", overwrite=True, **kw)
    con = sqlite3.connect(f"/tmp/golden/run_{name}/journal.sqlite")
    cols = [c[1] for c in con.execute("PRAGMA table_info(evaluations)")]
    rows = [dict(zip(cols, r)) for r in con.execute("SELECT * FROM evaluations ORDER BY id")]
    for row in rows: row.pop("seconds")
    out[name] = {"settings": kw, "rows": rows, "final_val": r.final["val_loss"]}
json.dump(out, open("/tmp/golden/golden.json", "w"), indent=1, sort_keys=True)
print({k: len(v["rows"]) for k, v in out.items()})
