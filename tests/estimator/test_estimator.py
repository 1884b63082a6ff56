"""The scikit-learn estimator: conformance suite, pipelines, scaling, anomaly scores."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import evoae
from evoae import EvolvedAutoencoder
from evoae.estimator import EXPECTED_FAILED_CHECKS, KEEP_Z, _lead_over_pca

#: A budget small enough for the dozens of fits the conformance suite makes.
TINY = dict(population=2, generations=0, epochs=1, final_epochs=1, min_steps=0, final_min_steps=0)
#: Checks feed 2-feature data, so the code must be 1-wide to stay undercomplete.
CHECKED = EvolvedAutoencoder(code_size=1, random_state=0, **TINY)


@parametrize_with_checks([CHECKED], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_conformance(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    return d.data[:300], d.target[:300]


def small(**kw) -> EvolvedAutoencoder:
    params = dict(code_size=4, population=2, generations=1, epochs=1, final_epochs=3)
    params.update(min_steps=0, final_min_steps=0)  # no step floors: seconds, not minutes
    params.update({"random_state": 0, **kw})
    return EvolvedAutoencoder(**params)


def useful(**kw) -> EvolvedAutoencoder:
    """A budget that learns something on 300 digits in a couple of seconds."""
    return small(**{"population": 4, "generations": 4, "epochs": 2, "final_epochs": 30, **kw})


def test_exported_from_package():
    assert evoae.EvolvedAutoencoder is EvolvedAutoencoder


def test_fit_transform_inverse_and_scores(digits):
    X, _ = digits
    ae = small().fit(X)
    assert ae.n_features_in_ == 64
    assert ae.best_spec_["code_size"] == 4 and ae.best_spec_["input_dim"] == 64
    assert set(ae.best_genome_) >= {"code_activation", "optimizer"}
    assert ae.history_ and "best" in ae.history_[-1]
    assert ae.n_evaluations_ >= 3
    Z = ae.transform(X)
    assert Z.shape == (300, 4) and Z.dtype == np.float64
    R = ae.inverse_transform(Z)
    assert R.shape == X.shape
    errors = ae.score_samples(X)
    assert errors.shape == (300,) and np.all(errors >= 0)
    np.testing.assert_allclose(errors, np.mean((X - R) ** 2, axis=1), rtol=1e-6)
    assert ae.score(X) == pytest.approx(-errors.mean())
    assert ae.get_feature_names_out().tolist() == [f"evolvedautoencoder{i}" for i in range(4)]


def test_same_seed_same_model_and_affine_units(digits):
    X, _ = digits
    a = small().fit(X)
    # A change of units (one factor, one offset) is undone by the learned scaling: same
    # codes, and errors scale with the square of the unit.
    b = small().fit(X * 100.0 - 50.0)
    np.testing.assert_array_equal(a.transform(X), b.transform(X * 100.0 - 50.0))
    assert b.score(X * 100.0 - 50.0) == pytest.approx(a.score(X) * 1e4, rel=1e-4)
    np.testing.assert_array_equal(b.data_min_, X.min(axis=0) * 100.0 - 50.0)
    c = small(random_state=1).fit(X)
    # Another seed, another search; when both return the PCA-shaped model (PCA of the
    # same rows, seed-free) the models coincide.
    assert a.history_ != c.history_
    if not (a.pca_refit_ and c.pca_refit_):
        assert not np.array_equal(a.transform(X), c.transform(X))


def test_score_samples_ranks_anomalies(digits):
    X, _ = digits
    ae = small(final_epochs=10).fit(X)
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 16, size=(50, 64))  # not digits: uniform noise over the pixel range
    assert np.median(ae.score_samples(noise)) > np.percentile(ae.score_samples(X), 90)


def test_pipeline_and_grid_search(digits):
    X, y = digits
    pipe = Pipeline(
        [("ae", useful()), ("std", StandardScaler()), ("clf", LogisticRegression(max_iter=500))]
    )
    pipe.fit(X, y)
    assert pipe.score(X, y) > 0.3  # 10 classes: chance is 0.1
    grid = GridSearchCV(useful(), {"code_size": [2, 6]}, cv=2)
    grid.fit(X)
    assert grid.best_params_["code_size"] in (2, 6)
    # score is the negative reconstruction error: a wider code reconstructs better
    assert grid.best_params_["code_size"] == 6
    assert grid.cv_results_["mean_test_score"][1] > grid.cv_results_["mean_test_score"][0]


def test_beats_the_mean_predictor(digits):
    X, _ = load_digits(return_X_y=True)
    ae = useful(generations=2, final_epochs=20).fit(X)
    # Predicting every row as the mean row has an MSE equal to the mean feature variance.
    assert -ae.score(X) < 0.8 * X.var(axis=0).mean()


def test_flattened_images(shared_data_dir):
    from evoae.data import load_dataset

    ds = load_dataset("mnist", data_dir=shared_data_dir, image_size=(16, 16), limit=200)
    X = ds.x.reshape(len(ds), -1)
    ae = small(code_size=8).fit(X)
    assert X.dtype == np.float32
    Z = ae.transform(X)
    assert Z.shape == (200, 8) and Z.dtype == np.float32  # float32 in, float32 out
    assert ae.inverse_transform(Z).shape == (200, 256)
    assert ae.score(X) < 0


def test_run_dir_kept_or_removed(digits, tmp_path, monkeypatch):
    X, _ = digits
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    ae = small().fit(X)
    assert ae.run_dir_ is None
    # The temporary run folder is gone (torch may leave its own cache folder there).
    assert list((tmp_path / "tmp").glob("evoae-fit-*")) == []
    kept = small(run_dir=tmp_path / "run").fit(X)
    assert kept.run_dir_ == tmp_path / "run"
    loaded = evoae.load_model(tmp_path / "run" / "model")
    if kept.pca_refit_:  # the folder keeps the search's retrained best; fit returned PCA
        assert kept.best_spec_["hidden"] == [] and kept.best_spec_["init"] == "pca"
        assert loaded.spec["input_dim"] == kept.best_spec_["input_dim"]
    else:
        assert loaded.spec == kept.best_spec_


def test_tiny_data_fits(digits):
    X, _ = digits
    ae = clone(CHECKED).set_params(code_size=3).fit(X[:5])
    assert ae.transform(X[:5]).shape == (5, 3)


@pytest.mark.parametrize(
    ("params", "X", "match"),
    [
        ({"code_size": 4}, np.random.rand(30, 4), "code_size=4 must be between 1"),
        ({"code_size": 1}, np.random.rand(30, 1), r"1 feature\(s\)"),
        ({"space": "huge"}, np.random.rand(30, 8), "unknown space 'huge'"),
        ({"strategy": "cma"}, np.random.rand(30, 8), "unknown strategy 'cma'"),
        ({"objective": "nope"}, np.random.rand(30, 8), "unknown objective 'nope'"),
        ({"objective": "probe"}, np.random.rand(30, 8), r"call fit\(X, y\)"),
        ({"fidelity": "bohb"}, np.random.rand(30, 8), "fidelity"),
        ({"final_pbt": 1}, np.random.rand(30, 8), "final"),
        ({"final_candidates": 0}, np.random.rand(30, 8), "final candidates must be at least 1"),
        ({"max_ratio": -1.0}, np.random.rand(30, 8), "max"),
        ({"max_ratio": "wide"}, np.random.rand(30, 8), "unknown max_ratio 'wide': give 'auto'"),
        ({"scale": "robust"}, np.random.rand(30, 8), "unknown scale 'robust': choose None"),
        ({"scale": 1.0}, np.random.rand(30, 8), "unknown scale 1.0"),
    ],
)
def test_bad_parameters_are_value_errors(params, X, match):
    with pytest.raises(evoae.EvoaeError, match=match) as e:
        clone(CHECKED).set_params(**params).fit(X)
    assert "\n" not in str(e.value)


def test_inverse_transform_checks_code_width(digits):
    X, _ = digits
    ae = small().fit(X)
    with pytest.raises(ValueError, match="code size is 4"):
        ae.inverse_transform(np.zeros((3, 5)))


def test_pca_example_runs(capsys):
    import importlib.util

    from sklearn.decomposition import PCA
    from sklearn.model_selection import train_test_split

    path = Path(__file__).resolve().parents[2] / "examples" / "pca_vs_evoae.py"
    spec = importlib.util.spec_from_file_location("pca_vs_evoae", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    tiny = ["--limit", "400", "--population", "2", "--generations", "1", "--final-epochs", "5"]
    results = example.main(tiny)
    out = capsys.readouterr().out
    assert "ratio evoae / PCA" in out and "code size 4" in out
    # Same split, same components: the example's PCA figure is PCA's held-out error.
    X_train, X_test = train_test_split(load_digits().data[:400], test_size=0.25, random_state=0)
    pca = PCA(n_components=4, random_state=0).fit(X_train)
    expected = np.mean((X_test - pca.inverse_transform(pca.transform(X_test))) ** 2)
    assert results["PCA"]["mse"] == pytest.approx(expected)
    assert 0 < results["evoae"]["mse"] < np.inf


def test_tabular_data_with_mixed_scales():
    from sklearn.datasets import load_wine

    X, _ = load_wine(return_X_y=True)  # 13 features from ~0.1 to ~1700
    ae = useful(code_size=3, epochs=5, final_epochs=100)  # 124 training rows: more epochs
    pipe = Pipeline([("std", StandardScaler()), ("ae", ae)]).fit(X)
    Z = pipe.transform(X)
    assert Z.shape == (178, 3) and np.isfinite(Z).all()
    std = pipe.named_steps["std"].transform(X)
    # On standardised data the mean predictor's MSE is 1 per value: the codes must carry
    # information about the rows.
    assert -pipe.named_steps["ae"].score(std) < 1.0


def test_labels_feed_the_objective(digits):
    X, y = digits
    ae = small(objective="probe").fit(X, y)
    assert ae.transform(X[:3]).shape == (3, 4)
    # The search scored candidates by the probe (an error rate in [0, 1]), and y's
    # length is checked against X's.
    assert 0.0 <= ae.best_fitness_ <= 1.0
    with pytest.raises(evoae.EvoaeError, match=r"y must have shape \(300,\)"):
        small(objective="probe").fit(X, y[:10])


def test_wider_space_asha_and_final_pbt(digits):
    X, _ = digits
    ae = small(max_ratio=2.0, fidelity="asha", final_pbt=2).fit(X)
    assert ae.transform(X[:3]).shape == (3, 4)
    assert ae.get_params()["fidelity"] == "asha"


# ------------------------------------------------------------------ units (scale=)


def _subspace(n: int = 300, seed: int = 0) -> np.ndarray:
    """Rank-2 rows with a little noise in 10 features whose scales span 1e-2 to 1e3."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2)) @ rng.normal(size=(2, 10))
    x = (z + 0.05 * rng.normal(size=(n, 10))) * np.logspace(-2, 3, 10)
    return x + 100 * rng.normal(size=10)


def _raw_mse(model, X: np.ndarray) -> float:
    return float(np.mean((X - model.inverse_transform(model.transform(X))) ** 2))


def test_default_units_are_the_users_like_pca():
    from sklearn.decomposition import PCA

    X = _subspace()
    train, test = X[:225], X[225:]
    pca = PCA(2).fit(train)
    ae = small(code_size=2).fit(train)
    assert ae.scale is None and np.ptp(ae.data_range_) == 0  # one factor for every feature
    for rows in (train, test):
        assert _raw_mse(ae, rows) == pytest.approx(_raw_mse(pca, rows), rel=0.01)
    assert -ae.score(test) == pytest.approx(_raw_mse(ae, test))
    # Per-feature scalings weigh the small features up and lose badly in raw units: the
    # comparison above can fail.
    minmax = small(code_size=2, scale="minmax").fit(train)
    assert _raw_mse(minmax, test) > 10 * _raw_mse(pca, test)


def test_scale_weighs_features_and_is_recorded_in_the_model_file(tmp_path):
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = _subspace()
    ae = small(code_size=2, scale="standard", run_dir=tmp_path / "fit").fit(X)
    # Standard deviations times one factor that keeps the values in [0, 1].
    ratio = ae.data_range_ / X.std(axis=0)
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)
    scaled = ae._scale(X)
    assert scaled.min() >= 0 and scaled.max() == pytest.approx(1.0)
    # A linear result is PCA in standard units: StandardScaler + PCA, in the user's units.
    if ae.pca_refit_:
        pipe = make_pipeline(StandardScaler(), PCA(2)).fit(X)
        assert _raw_mse(ae, X) == pytest.approx(_raw_mse(pipe, X), rel=1e-4)
    model = evoae.load_model(tmp_path / "fit" / "model")
    np.testing.assert_allclose(model.preprocess(X).numpy(), scaled, rtol=1e-5, atol=1e-6)
    # Per-feature scalings ignore each feature's units; the user's units do not.
    X2 = X * np.logspace(0, 2, 10)
    for scale in ("standard", "minmax"):
        a, b = small(code_size=2, scale=scale).fit(X), small(code_size=2, scale=scale).fit(X2)
        np.testing.assert_allclose(a.transform(X), b.transform(X2), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(small(code_size=2).fit(X2).data_range_, np.ptp(X2, axis=0).max())


def test_scale_is_a_parameter_like_any_other():
    ae = EvolvedAutoencoder(scale="standard")
    assert ae.get_params()["scale"] == "standard"
    assert clone(ae).scale == "standard"
    assert ae.set_params(scale=None).scale is None
    assert EvolvedAutoencoder().get_params()["scale"] is None


# ------------------------------------------------------------------ final stage


def test_final_candidates_is_a_parameter_that_reaches_the_final_stage(digits):
    X, _ = digits
    ae = EvolvedAutoencoder(final_candidates=2)
    assert ae.get_params()["final_candidates"] == 2
    assert clone(ae).final_candidates == 2
    assert ae.set_params(final_candidates=1).final_candidates == 1
    assert EvolvedAutoencoder().final_candidates == 3  # the search's default


def test_max_ratio_auto_allows_wide_layers_on_narrow_inputs(digits):
    from evoae.data import Dataset, Splits

    def splits(width: int) -> Splits:
        ds = Dataset(np.zeros((4, width), dtype=np.float32), None, "t")
        return Splits(ds, ds, None)

    ae = EvolvedAutoencoder()
    assert ae.max_ratio == "auto"
    assert ae._max_ratio(splits(64)) == 2.0 and ae._max_ratio(splits(256)) is None
    assert ae.set_params(max_ratio=1.5)._max_ratio(splits(256)) == 1.5
    X, _ = digits
    wide = small(population=6, generations=0, final_candidates=1).fit(X)
    narrow = small(population=6, generations=0, final_candidates=1, max_ratio=None).fit(X)
    assert (
        wide.final_["candidates"][0]["architecture"]
        != (narrow.final_["candidates"][0]["architecture"])
    )
    one = small(population=4, generations=2, final_candidates=1).fit(X)
    two = small(population=4, generations=2, final_candidates=2).fit(X)
    assert len(one.final_["candidates"]) == 1
    assert len(two.final_["candidates"]) == 2
    # The finalist both train first is the search's best: the same architecture.
    assert one.final_["candidates"][0]["evaluation"] == two.final_["candidates"][0]["evaluation"]


# ------------------------------------------------------------------ never worse than PCA


def test_a_lead_over_pca_within_noise_returns_pca():
    from sklearn.decomposition import PCA

    X = _subspace()  # rank 2 plus noise: nothing nonlinear to find
    ae = useful(code_size=2, final_candidates=1).fit(X)
    assert ae.pca_refit_ and ae.best_spec_["hidden"] == []
    assert ae.pca_lead_z_ is None or ae.pca_lead_z_ <= KEEP_Z
    assert _raw_mse(ae, X) == pytest.approx(_raw_mse(PCA(2).fit(X), X), rel=1e-3)


def test_lead_over_pca_is_a_paired_z_score():
    from evoae.data import Dataset, Splits
    from evoae.families import build_model
    from evoae.models.pca import pca_basis

    rng = np.random.default_rng(0)
    x = (rng.random((200, 6)) * np.linspace(1, 0.2, 6)).astype(np.float32)
    data = Splits(Dataset(x[:150], None, "t"), Dataset(x[150:], None, "t"), None)
    spec = {"family": "dense", "input_dim": 6, "code_size": 2, "hidden": [],
            "code_activation": "linear", "output_activation": "linear",
            "optimizer": "adam", "lr": 1e-3, "batch_size": 32, "init": "pca"}  # fmt: skip
    # PCA of every row reconstructs the validation rows better than PCA of the training
    # rows alone; a PCA of other data reconstructs them far worse.
    better = build_model(spec, 0, init=pca_basis(x, 2)).eval()
    worse = build_model(spec, 0, init=pca_basis(x[:, ::-1].copy(), 2)).eval()
    assert _lead_over_pca(worse, data, 2) < -KEEP_Z
    assert _lead_over_pca(better, data, 2) > 0
