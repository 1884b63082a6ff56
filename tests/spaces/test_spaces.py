"""Tests for evoae.spaces: genes, genome JSON, and dense decoding with layer removal."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import one_line_error

from evoae.data import Dataset
from evoae.families import FAMILIES as SPACE_FACTORIES
from evoae.families import make_space, space_from_config
from evoae.families.dense.space import (
    ACTIVATIONS,
    DEFAULT_LR,
    SEED_ACTIVATIONS,
    SEED_OPTIMIZERS,
    DenseSpace,
    dense_preset,
)
from evoae.spaces import OPTIMIZERS, spec_key


def genome(hidden, code="softmax", out="linear", opt="sgd", *extra):
    return (*[tuple(h) for h in hidden], code, out, opt, *extra)


def reference_hidden(hidden_genes, input_dim: int, code_size: int) -> list[list]:
    """The layer-removal rule written out independently of DenseSpace.decode."""
    kept, prev = [], input_dim
    for ratio, act in hidden_genes:
        w = math.floor(ratio * prev + 0.5)
        if w >= code_size:
            kept.append([w, act])
            prev = w
    return kept


# ------------------------------------------------------------------ decoding


def test_decode_matches_the_documented_spec_example():
    space = DenseSpace(256, 4)
    # 0.512 * 256 = 131.07 -> 131; 0.145 * 131 = 18.995 -> 19; 0.1 * 19 = 1.9 -> 2 < 4: removed.
    g = genome([(0.512, "sigmoid"), (0.145, "linear"), (0.1, "relu")])
    assert space.decode(g) == {
        "family": "dense",
        "input_dim": 256,
        "code_size": 4,
        "hidden": [[131, "sigmoid"], [19, "linear"]],
        "code_activation": "softmax",
        "output_activation": "linear",
        "optimizer": "sgd",
        "lr": 0.01,
        "batch_size": 32,
    }


def test_removed_layer_lets_the_next_gene_scale_from_the_last_kept_layer():
    space = DenseSpace(100, 10)
    # Gene 2 gives 0.05 * 50 = 2.5 -> 3 < 10, removed; gene 3 scales from 50, not from 3.
    spec = space.decode(genome([(0.5, "relu"), (0.05, "tanh"), (0.4, "sigmoid")]))
    assert spec["hidden"] == [[50, "relu"], [20, "sigmoid"]]


def test_first_gene_removed_then_next_scales_from_the_input():
    space = DenseSpace(100, 10)
    spec = space.decode(genome([(0.0, "relu"), (0.3, "tanh"), (0.5, "elu")]))
    # A zero-width layer is removed too; the ratios 0.3 and 0.5 apply to 100 and 30.
    assert spec["hidden"] == [[30, "tanh"], [15, "elu"]]


def test_width_equal_to_code_size_is_kept_and_one_below_is_removed():
    space = DenseSpace(100, 10)
    assert space.decode(genome([(0.1, "relu")] * 3))["hidden"] == [[10, "relu"]]
    # 0.094 * 100 = 9.4 -> 9 < 10.
    assert space.decode(genome([(0.094, "relu")] * 3))["hidden"] == []


def test_rounding_is_half_up_not_bankers():
    space = DenseSpace(21, 2, max_depth=1)
    # 0.5 * 21 = 10.5: floor(10.5 + 0.5) = 11, while Python's round() would give 10.
    assert space.decode(genome([(0.5, "relu")]))["hidden"] == [[11, "relu"]]
    space = DenseSpace(5, 1, max_depth=1)
    assert space.decode(genome([(0.5, "relu")]))["hidden"] == [[3, "relu"]]  # 2.5 -> 3


def test_all_layers_removed_gives_a_direct_code_layer():
    spec = DenseSpace(64, 8).decode(genome([(0.01, "relu")] * 3))
    assert spec["hidden"] == []
    assert spec["code_size"] == 8 and spec["input_dim"] == 64


def test_max_depth_zero_has_only_the_training_genes():
    space = DenseSpace(64, 8, max_depth=0)
    assert [g.name for g in space.genes] == ["code_activation", "output_activation", "optimizer"]
    assert space.decode(("relu", "sigmoid", "adam"))["hidden"] == []


def test_random_genomes_follow_the_layer_removal_rule():
    rng = np.random.default_rng(123)
    for input_dim, code_size, depth in [(256, 4, 3), (64, 8, 5), (784, 32, 4), (10, 9, 3)]:
        space = DenseSpace(input_dim, code_size, max_depth=depth, activations=ACTIVATIONS)
        for _ in range(300):
            g = space.sample(rng)
            spec = space.decode(g)
            # Kept layers keep their own gene's activation, in order.
            assert spec["hidden"] == reference_hidden(g[:depth], input_dim, code_size)
            widths = [w for w, _ in spec["hidden"]]
            assert all(code_size <= w <= input_dim for w in widths)
            assert widths == sorted(widths, reverse=True)  # ratios < 1 never widen


def test_lr_and_batch_defaults_follow_the_optimizer():
    space = DenseSpace(64, 4, optimizers=OPTIMIZERS, batch_size=50)
    for opt in OPTIMIZERS:
        spec = space.decode(genome([(0.5, "relu")] * 3, "relu", "sigmoid", opt))
        assert spec["lr"] == DEFAULT_LR[opt]
        assert spec["batch_size"] == 50
    assert DEFAULT_LR == {"sgd": 0.01, "adam": 0.001, "adamw": 0.001}


def test_lr_and_batch_genes_are_decoded():
    space = DenseSpace(64, 4, lr_gene=True, batch_gene=True, batch_choices=(8, 16))
    names = [g.name for g in space.genes]
    assert names[-2:] == ["learning_rate", "batch_size"]
    spec = space.decode(genome([(0.5, "relu")] * 3, "relu", "sigmoid", "adam", 0.0123, 16))
    assert spec["lr"] == 0.0123 and spec["batch_size"] == 16


def test_decoded_specs_are_json_able():
    space = dense_preset("extended", 256, 8)
    rng = np.random.default_rng(0)
    for _ in range(50):
        spec = space.decode(space.sample(rng))
        assert json.loads(json.dumps(spec)) == spec


# ------------------------------------------------------------------ sampling


def test_sampled_genes_are_in_range_and_reproducible():
    space = dense_preset("extended", 100, 5)
    a = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    b = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    rng = np.random.default_rng(1)
    samples = [space.sample(rng) for _ in range(500)]
    assert len(set(samples)) == 500
    g = dict(zip([x.name for x in space.genes], zip(*samples, strict=True), strict=True))
    ratios = [r for i in range(space.max_depth) for r, _ in g[f"hidden_{i + 1}"]]
    assert 0.0 <= min(ratios) and max(ratios) < 1.0
    assert 0.45 < float(np.mean(ratios)) < 0.55  # uniform on [0, 1)
    acts = {a for i in range(space.max_depth) for _, a in g[f"hidden_{i + 1}"]}
    assert acts == set(ACTIVATIONS)
    assert set(g["code_activation"]) == set(ACTIVATIONS)
    assert set(g["optimizer"]) == set(OPTIMIZERS)
    assert set(g["batch_size"]) == {16, 32, 64, 128}
    lrs = np.log10(g["learning_rate"])
    assert -4 <= lrs.min() and lrs.max() <= -1
    assert -2.7 < float(np.mean(lrs)) < -2.3  # log-uniform: mean exponent -2.5


# ------------------------------------------------------------------ genome JSON, config


def test_genome_json_round_trip_restores_tuples():
    space = dense_preset("extended", 64, 4)
    g = space.sample(np.random.default_rng(3))
    data = json.loads(json.dumps(space.to_json(g)))
    assert isinstance(data["hidden_1"], list)
    back = space.from_json(data)
    assert back == g and isinstance(back[0], tuple)
    assert space.decode(back) == space.decode(g)


def test_genome_of_wrong_length_or_missing_genes_is_refused():
    space = DenseSpace(64, 4)
    one_line_error(lambda: space.validate(("relu", "relu", "sgd")), "3 genes", "6")
    data = space.to_json(space.sample(np.random.default_rng(0)))
    del data["optimizer"]
    one_line_error(lambda: space.from_json(data), "optimizer")
    one_line_error(lambda: space.decode(("relu",)), "1 genes")


def test_config_round_trip_rebuilds_an_equal_space():
    for space in (DenseSpace(64, 4), dense_preset("extended", 256, 16, max_depth=2)):
        cfg = json.loads(json.dumps(space.config()))
        again = space_from_config(cfg)
        assert isinstance(again, DenseSpace)
        assert again.config() == space.config()
        rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
        for _ in range(20):
            g = space.sample(rng_a)
            assert again.sample(rng_b) == g
            assert again.decode(g) == space.decode(g)


def test_space_from_config_unknown_family():
    one_line_error(lambda: space_from_config({"family": "nope"}), "nope", "dense")


# ------------------------------------------------------------------ presets and factories


def test_seed_preset_is_the_published_space():
    space = dense_preset("seed", 256, 4)
    assert [g.name for g in space.genes] == [
        "hidden_1",
        "hidden_2",
        "hidden_3",
        "code_activation",
        "output_activation",
        "optimizer",
    ]
    assert space.activations == SEED_ACTIVATIONS
    assert space.optimizers == SEED_OPTIMIZERS
    assert not space.lr_gene and not space.batch_gene


def test_extended_preset_and_overrides():
    space = dense_preset("extended", 256, 4)
    assert space.n_genes == 4 + 3 + 2
    assert space.activations == ACTIVATIONS and space.optimizers == OPTIMIZERS
    assert dense_preset("extended", 256, 4, max_depth=2).n_genes == 2 + 3 + 2
    # None means "not given": the preset's value stays.
    assert dense_preset("seed", 256, 4, max_depth=None).max_depth == 3
    one_line_error(lambda: dense_preset("huge", 256, 4), "huge", "seed", "extended")


def test_make_space_sizes_the_space_from_the_data():
    train = Dataset(np.zeros((5, 1, 6, 6), np.float32), None, "toy")
    space = make_space("dense", "seed", train, 3)
    assert space.input_dim == 36 and space.code_size == 3
    assert "dense" in SPACE_FACTORIES
    one_line_error(lambda: make_space("transformer", "seed", train, 3), "transformer")


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"activations": ["nope"]}, ("activation", "'nope'", "relu")),
        ({"activations": []}, ("activation",)),
        ({"optimizers": ["rmsprop"]}, ("optimizer", "'rmsprop'")),
        ({"max_depth": -1}, ("max depth",)),
        ({"lr_range": (0.1, 0.01)}, ("learning-rate",)),
        ({"lr_range": (0.0, 0.01)}, ("learning-rate",)),
        ({"batch_size": 0}, ("batch",)),
        ({"batch_choices": ()}, ("batch",)),
        ({"batch_choices": (16, -1)}, ("batch",)),
    ],
)
def test_bad_space_options_raise_one_line_errors(kwargs, fragments):
    one_line_error(lambda: DenseSpace(64, 4, **kwargs), *fragments)


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"activation": ["relu"]}, ("activation", "activations")),
        ({"lr_range": [1e-3]}, ("learning-rate range",)),
        ({"lr_range": "fast"}, ("learning-rate range",)),
        ({"activations": "relu"}, ("activations", "list")),
    ],
)
def test_bad_preset_overrides_raise_one_line_errors(overrides, fragments):
    # The search's space_options arrive here unchecked: mistakes must be EvoaeErrors.
    one_line_error(lambda: dense_preset("seed", 64, 4, **overrides), *fragments)


@pytest.mark.parametrize(("input_dim", "code_size"), [(64, 64), (64, 65), (64, 0), (1, 1)])
def test_code_size_must_compress_the_input(input_dim, code_size):
    one_line_error(lambda: DenseSpace(input_dim, code_size), str(code_size))


# ------------------------------------------------------------------ spec keys


def test_spec_key_ignores_dict_order_and_separates_phenotypes():
    space = DenseSpace(64, 4)
    a = space.decode(genome([(0.5, "relu")] * 3))
    b = dict(reversed(list(a.items())))
    assert spec_key(a) == spec_key(b)
    # Different genomes, same phenotype: ratios that round to the same widths.
    c = space.decode(genome([(0.501, "relu"), (0.499, "relu"), (0.5, "relu")]))
    assert c == a and spec_key(c) == spec_key(a)
    d = space.decode(genome([(0.5, "relu")] * 3, out="sigmoid"))
    assert spec_key(d) != spec_key(a)


@pytest.mark.parametrize("family", ["dense", "conv-vae"])
def test_check_genes_takes_what_the_search_makes_and_refuses_the_rest(family: str) -> None:
    train = Dataset(np.zeros((5, 1, 8, 8), np.float32), None, "toy")
    space = make_space(family, "extended", train, 4)
    rng = np.random.default_rng(0)
    drawn = [space.sample(rng) for _ in range(50)]
    seeds = space.seed_genomes()
    for g in drawn + seeds:
        assert space.check_genes(json.loads(json.dumps(g))) == space.validate(g)
    if seeds:  # crossover hands a seed's genes to a drawn genome
        child = (*seeds[0][:1], *drawn[0][1:])
        space.check_genes(child)
    names = [g.name for g in space.genes]
    i = next(k for k, g in enumerate(space.genes) if g.domain is not None)
    bad = list(drawn[0])
    bad[i] = 1e9 if not isinstance(bad[i], tuple | str) else "rm -rf"
    with pytest.raises(ValueError, match=names[i]):
        space.check_genes(tuple(bad))
