"""CSV columns and labels, in-memory arrays for search(data=...), and the preprocessing
record that travels from the loader into model.json and back through load_model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import one_line_error

import evoae
from evoae.cli import main
from evoae.data import Dataset, Preprocess, as_dataset, from_arrays, load_dataset, load_splits
from evoae.families import build_model, make_space
from evoae.families.io import load_model, save_model

TINY = [
    "--strategy",
    "microbial",
    "--population",
    "2",
    "--generations",
    "1",
    "--epochs",
    "1",
    "--final-epochs",
    "1",
]


def iris_like(path: Path, n: int = 60) -> tuple[np.ndarray, list[str]]:
    """A CSV with an id column, three numeric features and a text label; returns both."""
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(n, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -50.0]
    species = [("setosa", "virginica", "versicolor")[i % 3] for i in range(n)]
    lines = ["id,petal,sepal,stem,species"]
    lines += [
        f"r{i},{a:.17g},{b:.17g},{c:.17g},{s}"
        for i, ((a, b, c), s) in enumerate(zip(feats, species, strict=True))
    ]
    path.write_text("\n".join(lines) + "\n")
    return feats, species


# ------------------------------------------------------------------ CSV columns


def test_csv_label_column_is_kept_as_labels_not_features(tmp_path):
    feats, species = iris_like(tmp_path / "iris.csv")
    ds = load_dataset(
        tmp_path / "iris.csv", columns=["petal", "sepal", "stem"], label_column="species"
    )
    assert ds.x.shape == (60, 3) and ds.y is not None
    assert ds.classes == ["setosa", "versicolor", "virginica"]  # sorted
    assert [ds.classes[i] for i in ds.y] == species
    np.testing.assert_allclose(
        ds.x[:, 1], (feats[:, 1] - feats[:, 1].min()) / np.ptp(feats[:, 1]), atol=1e-6
    )
    pre = ds.preprocess
    assert pre["columns"] == ["petal", "sepal", "stem"] and pre["label_column"] == "species"
    # Indices work as well as names, in the order given.
    by_index = load_dataset(tmp_path / "iris.csv", columns=["3", 1], label_column="4", limit=10)
    np.testing.assert_array_equal(by_index.x[:, 0], ds.x[:10, 2])
    assert (
        by_index.preprocess["columns"] == ["stem", "petal"]
        and by_index.y.tolist() == ds.y[:10].tolist()
    )


def test_csv_without_header_label_by_index_and_integer_labels(tmp_path):
    (tmp_path / "t.csv").write_text("cat,1,2\ndog,3,4\ncat,5,8\n")
    ds = load_dataset(tmp_path / "t.csv", label_column="0")
    assert ds.x.shape == (3, 2) and ds.y.tolist() == [0, 1, 0] and ds.classes == ["cat", "dog"]
    assert ds.preprocess["columns"] == [1, 2] and ds.preprocess["label_column"] == 0
    (tmp_path / "n.csv").write_text("a,b,y\n1,2,7\n3,4,3\n")
    ints = load_dataset(tmp_path / "n.csv", label_column="y")
    assert ints.y.tolist() == [7, 3] and ints.classes is None and ints.x.shape == (2, 2)


def test_csv_column_errors(tmp_path):
    iris_like(tmp_path / "iris.csv")
    path = tmp_path / "iris.csv"
    msg = one_line_error(lambda: load_dataset(path, label_column="kind"), "no column 'kind'")
    assert all(name in msg for name in ("'petal'", "'species'"))
    one_line_error(
        lambda: load_dataset(path, columns=["petal", "nope"]), "no column 'nope'", "'stem'"
    )
    one_line_error(
        lambda: load_dataset(path, columns=["petal", "0"]), "'r0'", "not a finite number"
    )
    one_line_error(lambda: load_dataset(path, columns=["petal", "petal"]), "twice")
    one_line_error(
        lambda: load_dataset(path, columns=["petal", "species"], label_column="species"),
        "label column",
    )
    one_line_error(lambda: load_dataset(path, columns=["9"]), "no column '9'")
    # Without --columns the text id column is a feature, and refused as before.
    one_line_error(
        lambda: load_dataset(path, label_column="species"), "row 2, column 1", "--columns"
    )
    one_line_error(lambda: load_dataset("digits", label_column="y"), "CSV files only")
    (tmp_path / "h.csv").write_text("1,2\n3,4\n")
    one_line_error(lambda: load_dataset(tmp_path / "h.csv", columns=["a"]), "no header")
    # A header name used twice was resolved silently to its first column.
    (tmp_path / "d.csv").write_text("a,a,b,y\n" + "1,2,3,0\n4,5,6,1\n" * 10)
    one_line_error(
        lambda: load_dataset(tmp_path / "d.csv", columns=["a", "b"], label_column="y"),
        "2 columns named 'a'",
        "(0, 1)",
    )
    one_line_error(lambda: load_dataset(tmp_path / "d.csv", label_column="a"), "columns named")
    assert load_dataset(tmp_path / "d.csv", columns=["1", "b"], label_column="y").x.shape[1] == 2


def test_cli_search_with_columns_and_label_column(tmp_path, capsys):
    feats, _ = iris_like(tmp_path / "iris.csv", n=80)
    out = tmp_path / "run"
    argv = ["search", *TINY, "--quiet", "--dataset", str(tmp_path / "iris.csv"), "--code-size", "2"]
    argv += ["--columns", "petal,sepal,stem", "--label-column", "species", "--out", str(out)]
    assert main(argv) == 0
    settings = json.loads((out / "settings.json").read_text())["data"]
    assert (
        settings["columns"] == ["petal", "sepal", "stem"] and settings["label_column"] == "species"
    )
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["spec"]["input_dim"] == 3  # the label is not a feature
    pre = meta["preprocess"]
    assert pre["classes"] == ["setosa", "versicolor", "virginica"] and pre["input_shape"] == [3]
    np.testing.assert_allclose(pre["data_min"], feats.min(axis=0))
    np.testing.assert_allclose(pre["data_range"], np.ptp(feats, axis=0))
    # The labels reach the splits (objectives and plots use them).
    splits = evoae.SearchSettings.from_dict(
        json.loads((out / "settings.json").read_text())
    ).load_splits()
    assert splits.train.y is not None and set(splits.train.y.tolist()) <= {0, 1, 2}
    model = evoae.load_model(out / "model")
    np.testing.assert_allclose(
        model.preprocess(feats).numpy(),
        load_dataset(tmp_path / "iris.csv", columns=["petal", "sepal", "stem"]).x,
        atol=1e-6,
    )
    # An unknown column is one error line, before any run folder is made.
    bad = [*argv[:-2], "--label-column", "kind", "--out", str(tmp_path / "bad")]
    bad[bad.index("species")] = "kind"
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("evoae: error: ") and "no column 'kind'" in err and err.count("\n") == 1
    assert not (tmp_path / "bad").exists()


def test_npz_text_labels_are_numbered(tmp_path):
    x = np.random.default_rng(3).random((4, 5))
    np.savez(tmp_path / "d.npz", x=x, y=np.array(["b", "a", "c", "a"]))
    ds = load_dataset(tmp_path / "d.npz")
    assert ds.y.tolist() == [1, 0, 2, 0] and ds.classes == ["a", "b", "c"]
    np.savez(tmp_path / "f.npz", x=x, y=np.array([0.5, 1.5, 0.5, 2.0]))
    assert load_dataset(tmp_path / "f.npz").classes == [0.5, 1.5, 2.0]


# ------------------------------------------------------------------ in-memory data


def test_arrays_are_scaled_and_recorded():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(30, 4)) * [1, 10, 100, 0] + 7  # last column constant
    ds = from_arrays(table)
    assert ds.x.shape == (30, 4) and ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert np.all(ds.x[:, 3] == 0.0) and ds.preprocess["data_range"][3] == 1.0
    np.testing.assert_allclose(Preprocess(ds.preprocess)(table).numpy(), ds.x, atol=1e-6)
    # Tabular values are not clipped: a raw 1e300 became inf in float32, silently.
    for far in (1e300, -1e308):
        one_line_error(lambda f=far: Preprocess(ds.preprocess)(np.full((2, 4), f)), "overflow")

    pixels = rng.integers(0, 256, (10, 9, 7), dtype=np.uint8)
    imgs = from_arrays(pixels)
    assert imgs.x.shape == (10, 1, 9, 7) and imgs.preprocess["data_range"] == 255.0
    unit = rng.random((6, 3, 5, 5)).astype(np.float32) * 0.5 + 0.25
    kept = from_arrays(unit)
    np.testing.assert_array_equal(kept.x, unit)
    assert (kept.preprocess["data_min"], kept.preprocess["data_range"]) == (0.0, 1.0)
    np.testing.assert_array_equal(Preprocess(kept.preprocess)(unit).numpy(), unit)
    wide = rng.integers(-5, 12, (4, 6, 6)).astype(np.int64)  # global min-max, as .npy files
    scaled = from_arrays(wide)
    assert scaled.preprocess["data_min"] == float(wide.min())
    np.testing.assert_allclose(Preprocess(scaled.preprocess)(wide).numpy(), scaled.x, atol=1e-6)
    labelled = as_dataset((table, np.arange(30) % 3))
    assert labelled.y.tolist()[:4] == [0, 1, 2, 0] and labelled.name == "<array>"
    same = Dataset(unit, None, "mine")
    assert as_dataset(same) is same


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (np.zeros(5), "shape (5,)"),
        (np.zeros((2, 3, 4, 5, 6)), "shape (2, 3, 4, 5, 6)"),
        (np.array([["a", "b"]]), "needs numbers"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), "NaN"),
        (np.zeros((0, 3)), "no rows"),
        ({"x": 1}, "a Dataset, a NumPy array or a tuple (X, y)"),
        ((np.zeros((4, 2)),), "(X, y)"),
        ((np.zeros((4, 2)), np.zeros(3)), "labels"),
        ((np.zeros((4, 2)), np.zeros((4, 2))), "labels"),
    ],
)
def test_bad_arrays_are_one_line_errors(data, fragment, tmp_path):
    one_line_error(lambda: evoae.search(data=data, out=tmp_path / "run"), fragment)
    assert not (tmp_path / "run").exists()


def test_search_on_arrays_and_labels(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 6)) * 50 + 100
    y = np.where(X[:, 0] > 100, "big", "small")
    result = evoae.search(
        data=(X, y),
        out=tmp_path / "run",
        code_size=2,
        strategy="microbial",
        population=2,
        generations=1,
        epochs=1,
        final_epochs=1,
    )
    assert result.settings.data.dataset == "<array>"
    model = evoae.load_model(tmp_path / "run" / "model")
    pre = json.loads((tmp_path / "run" / "model" / "model.json").read_text())["preprocess"]
    assert pre["classes"] == ["big", "small"] and pre["input_shape"] == [6]
    np.testing.assert_allclose(pre["data_min"], X.min(axis=0))
    x = model.preprocess(X)
    assert x.shape == (120, 6) and float(x.min()) == 0.0 and float(x.max()) == pytest.approx(1.0)
    np.testing.assert_allclose(x.numpy(), from_arrays(X).x, atol=1e-6)
    # The in-memory model carries the same preprocessing.
    np.testing.assert_allclose(result.model.preprocess(X[:3]).numpy(), x[:3].numpy())
    # Images straight from an array, named "<array>" in the run.
    imgs = rng.integers(0, 256, (60, 8, 8), dtype=np.uint8)
    res = evoae.search(
        data=imgs,
        out=tmp_path / "imgs",
        strategy="microbial",
        population=2,
        generations=1,
        epochs=1,
        final_epochs=1,
    )
    assert evoae.load_model(res.run_dir / "model").preprocess(imgs).shape == (60, 64)


# ------------------------------------------------------------------ the record


def test_preprocess_replays_the_loader_with_resize(tmp_path):
    raw = np.random.default_rng(4).integers(0, 256, (12, 10, 12), dtype=np.uint8)
    np.save(tmp_path / "imgs.npy", raw)
    ds = load_dataset(tmp_path / "imgs.npy", image_size=(5, 6))
    pre = ds.preprocess
    assert pre["resize"] == [5, 6] and pre["raw_shape"] == [1, 10, 12]
    space = make_space("dense", "seed", ds, 3)
    genome = space.sample(np.random.default_rng(0))
    model = build_model(space.decode(genome), seed=1).eval()
    save_model(
        model, tmp_path / "m", space=space.config(), genome=space.to_json(genome), preprocess=pre
    )
    loaded = load_model(tmp_path / "m")
    assert loaded.preprocess.record["input_shape"] == [30]
    for layout in (raw, raw[:, None], raw[..., None], raw.reshape(12, -1)):
        got = loaded.preprocess(layout)
        assert got.dtype == torch.float32 and got.shape == (12, 30)
        np.testing.assert_allclose(got.numpy(), ds.x.reshape(12, -1), atol=1e-6)
    one_line_error(lambda: loaded.preprocess(np.zeros((2, 5, 6))), "(N, 10, 12)")
    one_line_error(lambda: loaded.preprocess(np.array([["a"]])), "numbers")
    # The record is not part of the weights: state dicts are unchanged.
    assert set(loaded.state_dict()) == set(model.state_dict())


def test_models_without_a_record_and_bad_records(tmp_path):
    ds = load_dataset("digits", limit=50)
    space = make_space("dense", "seed", ds, 3)
    genome = space.sample(np.random.default_rng(0))
    model = build_model(space.decode(genome), seed=1).eval()
    folder = save_model(model, tmp_path / "m", space=space.config(), genome=space.to_json(genome))
    meta = json.loads((folder / "model.json").read_text())
    assert meta["preprocess"]["data_range"] == 1.0  # inputs taken as they are
    del meta["preprocess"]  # a model of evoae 0.2
    (folder / "model.json").write_text(json.dumps(meta))
    np.testing.assert_array_equal(load_model(folder).preprocess(ds.x).numpy(), ds.x.reshape(50, -1))
    meta["preprocess"] = {"kind": "tabular", "raw_shape": [64], "data_min": [0, 1], "data_range": 1}
    (folder / "model.json").write_text(json.dumps(meta))
    one_line_error(lambda: load_model(folder), "preprocessing record is invalid", "data_min")


def test_splits_refuse_columns_for_arrays():
    one_line_error(lambda: load_splits(data=np.zeros((10, 3)), columns=["a"]), "in-memory")


def test_estimator_records_its_scaling(tmp_path):
    from sklearn.datasets import load_digits

    X = load_digits().data[:200]
    ae = evoae.EvolvedAutoencoder(
        code_size=2,
        strategy="microbial",
        population=2,
        generations=1,
        epochs=1,
        final_epochs=1,
        random_state=0,
        run_dir=tmp_path / "fit",
    )
    ae.fit(X)
    model = evoae.load_model(tmp_path / "fit" / "model")
    np.testing.assert_allclose(model.preprocess(X).numpy(), ae._scale(X), atol=1e-6)
    np.testing.assert_allclose(model.preprocess.record["data_min"], ae.data_min_)
