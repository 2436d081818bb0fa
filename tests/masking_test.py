import keras
import numpy as np
import pytest

from tf_gradual_prune import find_prunable_weights, sparsity_table

L = keras.layers


def build(*layers, shape=(5, 3)):
    return keras.Sequential([keras.Input(shape)] + list(layers))


# (model factory, number of recurrent matrices)
RECURRENT_MODELS = {
    "lstm": (lambda: build(L.LSTM(4), L.Dense(2)), 2),
    "gru": (lambda: build(L.GRU(4), L.Dense(2)), 2),
    "simple_rnn": (lambda: build(L.SimpleRNN(4), L.Dense(2)), 2),
    "rnn_cell": (lambda: build(L.RNN(L.LSTMCell(4)), L.Dense(2)), 2),
    "stacked_cells": (
        lambda: build(
            L.RNN(L.StackedRNNCells([L.GRUCell(4), L.SimpleRNNCell(3)])),
            L.Dense(2),
        ),
        4,
    ),
    "bidirectional": (lambda: build(L.Bidirectional(L.LSTM(4)), L.Dense(2)), 4),
    "stacked_layers": (
        lambda: build(L.GRU(4, return_sequences=True), L.LSTM(4), L.Dense(2)),
        4,
    ),
    "nested_model": (
        lambda: build(build(L.Bidirectional(L.GRU(4)), shape=(5, 3)), L.Dense(2)),
        4,
    ),
}


@pytest.mark.parametrize("name", sorted(RECURRENT_MODELS))
def test_default_selects_every_recurrent_kernel_and_no_bias(name):
    factory, expected = RECURRENT_MODELS[name]
    model = factory()
    selected = find_prunable_weights(model)
    assert len(selected) == expected
    kernels = {id(v) for v in model.weights if v.name in ("kernel", "recurrent_kernel")}
    for item in selected:
        assert item.kind == "recurrent"
        assert item.variable.name in ("kernel", "recurrent_kernel")
        assert id(item.variable) in kernels
        # Keras' path where it has all the layers (a nested model's leaves
        # out the outer model), the layer names otherwise.
        assert item.name.endswith(item.variable.path)
    assert len({item.name for item in selected}) == expected
    if name != "nested_model":
        assert [item.name for item in selected] == [item.variable.path for item in selected]


@pytest.mark.parametrize("name", sorted(RECURRENT_MODELS))
def test_names_survive_a_keras_save_and_load(name, tmp_path):
    # `.keras` loading builds wrapped layers outside their wrapper's name
    # scope: `variable.path` loses "bidirectional/", "rnn/", "sequential/".
    model = RECURRENT_MODELS[name][0]()
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert ([row["name"] for row in sparsity_table(reloaded)]
            == [row["name"] for row in sparsity_table(model)])


def test_functional_names_leave_out_the_model_name():
    inputs = keras.Input((5, 3))
    outputs = L.Dense(2, name="out")(L.Bidirectional(L.GRU(4, name="gru"), name="bi")(inputs))
    model = keras.Model(inputs, outputs, name="speech")
    assert [item.name for item in find_prunable_weights(model, weights="all")] == [
        "bi/forward_gru/gru_cell/kernel", "bi/forward_gru/gru_cell/recurrent_kernel",
        "bi/backward_gru/gru_cell/kernel", "bi/backward_gru/gru_cell/recurrent_kernel",
        "out/kernel"]


def test_bidirectional_covers_both_directions():
    model = RECURRENT_MODELS["bidirectional"][0]()
    names = [item.name for item in find_prunable_weights(model)]
    assert sum("forward" in n for n in names) == 2
    assert sum("backward" in n for n in names) == 2


def test_kinds_and_all():
    model = build(
        L.Embedding(20, 3),
        L.Conv1D(4, 2),
        L.LSTM(4),
        L.Dense(2),
        shape=(5,),
    )
    kinds = [item.kind for item in find_prunable_weights(model, weights="all")]
    assert kinds == ["embedding", "conv", "recurrent", "recurrent", "dense"]
    dense_conv = find_prunable_weights(model, weights=["dense", "conv"])
    assert [item.kind for item in dense_conv] == ["conv", "dense"]


def test_layers_restricts_the_selection():
    model = build(L.LSTM(4, return_sequences=True, name="first"), L.GRU(3, name="second"))
    by_name = find_prunable_weights(model, layers=["second"])
    assert [item.name.split("/")[1] for item in by_name] == ["second", "second"]
    by_object = find_prunable_weights(model, layers=[model.layers[0]])
    assert all("first" in item.name for item in by_object)


def test_shared_layer_appears_once():
    shared = L.Dense(3)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, shared(shared(inputs)))
    assert len(find_prunable_weights(model, weights="dense")) == 1


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(weights="bias"), ValueError, "weights='bias'"),
        (dict(weights=["recurrent", "norm"]), ValueError, "'norm'"),
        (dict(weights=[]), ValueError, r"weights=\[\]"),
        (dict(weights=3), TypeError, "weights=3"),
        (dict(layers=["nope"]), ValueError, "Received: 'nope'; the model has"),
        (dict(layers=[3]), TypeError, "Received: 3"),
        (dict(weights="conv"), ValueError, "matches no prunable weight.*weights='conv'"),
    ],
)
def test_selection_errors(kwargs, error, match):
    model = build(L.LSTM(4), L.Dense(2))
    with pytest.raises(error, match=match):
        find_prunable_weights(model, **kwargs)


def test_unbuilt_model_is_an_error():
    with pytest.raises(ValueError, match="built=False"):
        find_prunable_weights(keras.Sequential([L.LSTM(3)]))


def test_layer_not_in_model_is_an_error():
    model = build(L.LSTM(4))
    with pytest.raises(ValueError, match="not in the model"):
        find_prunable_weights(model, layers=[L.GRU(2)])


def test_sparsity_table_counts_exact_zeros():
    model = build(L.LSTM(4), L.Dense(2))
    kernel = model.layers[0].cell.kernel
    values = np.ones(kernel.shape, "float32")
    values[0, :5] = 0.0
    kernel.assign(values)
    table = sparsity_table(model)
    row = table[kernel.path]
    assert row["zeros"] == 5
    assert row["size"] == values.size
    assert row["sparsity"] == pytest.approx(5 / values.size)
    assert len(table) == 3
    assert table.zeros >= 5
    text = str(table)
    assert "total" in text and kernel.path in text
    assert table.to_markdown().startswith("| weight |")
    with pytest.raises(KeyError):
        table["missing"]


def test_block_magnitudes_and_expansion():
    from tf_gradual_prune.masking import block_magnitudes, expand_blocks

    w = np.arange(1, 11, dtype="float32").reshape(5, 2) * np.array([1, -1], "float32")
    scores = block_magnitudes(w, 2)
    # Rows (1,3), (5,7), (9) for column 0; the last block is short.
    np.testing.assert_array_equal(scores, [[3, 4], [7, 8], [9, 10]])
    np.testing.assert_array_equal(block_magnitudes(w, 1), np.abs(w))
    keep = np.array([[True, False], [False, True], [True, True]])
    expanded = expand_blocks(keep, 2, w.shape)
    assert expanded.shape == (5, 2)
    np.testing.assert_array_equal(expanded[:, 0], [1, 1, 0, 0, 1])
    conv = np.ones((3, 8, 5), "float32")  # (kernel, in, out): blocks along in
    assert block_magnitudes(conv, 4).shape == (3, 2, 5)


def test_blocks_across_outputs():
    from tf_gradual_prune.masking import block_magnitudes, expand_blocks

    w = np.arange(1, 16, dtype="float32").reshape(3, 5)
    # (1, 2): one input row, two consecutive outputs; the last block is short.
    np.testing.assert_array_equal(
        block_magnitudes(w, (1, 2)), [[2, 4, 5], [7, 9, 10], [12, 14, 15]])
    np.testing.assert_array_equal(block_magnitudes(-w, (2, 2)), [[7, 9, 10], [12, 14, 15]])
    keep = np.array([[True, False, True], [False, True, False], [True, True, False]])
    expanded = expand_blocks(keep, (1, 2), w.shape)
    np.testing.assert_array_equal(
        expanded, [[1, 1, 0, 0, 1], [0, 0, 1, 1, 0], [1, 1, 1, 1, 0]])
    conv = np.ones((3, 8, 64), "float32")
    assert block_magnitudes(conv, (1, 32)).shape == (3, 8, 2)


@pytest.mark.parametrize(
    "given, expected",
    [(4, 4), ((4, 1), 4), ([4, 1], 4), ((1, 32), (1, 32)), ([2, 8], (2, 8)), ((1, 1), 1)],
)
def test_check_block_size_normalises(given, expected):
    from tf_gradual_prune.masking import check_block_size

    assert check_block_size(given) == expected


def test_prune_below_only_loses_ones_and_keeps_blocks_whole():
    from tf_gradual_prune.masking import prune_below

    rng = np.random.default_rng(0)
    values = rng.normal(size=(10, 6)).astype("float32")
    mask = np.ones(values.shape, bool)
    mask[0, 0] = False  # pruned before, whatever its value
    values[0, 0] = 5.0
    new = prune_below(values, mask, 0.5, 1)
    np.testing.assert_array_equal(new, mask & (np.abs(values) >= np.float32(0.5)))
    blocks = prune_below(values, np.ones(values.shape, bool), 0.8, 4)
    for start in range(0, 10, 4):
        chunk = blocks[start:start + 4]
        assert np.all(chunk.all(axis=0) | ~chunk.any(axis=0))


def test_prune_to_sparsity_counts_exactly_and_never_regrows():
    from tf_gradual_prune.masking import prune_to_sparsity

    rng = np.random.default_rng(1)
    values = rng.normal(size=(8, 5)).astype("float32")
    mask, cut = prune_to_sparsity(values, np.ones(values.shape, bool), 0.6, 1)
    assert mask.size - mask.sum() == 24
    assert cut == pytest.approx(np.sort(np.abs(values).ravel())[23])
    assert np.all(np.abs(values[mask]) >= cut)
    # Asking for less later prunes nothing more and restores nothing.
    again, cut = prune_to_sparsity(values, mask, 0.3, 1)
    np.testing.assert_array_equal(again, mask)
    assert cut == 0.0
    # Ties are broken by position: equal magnitudes, the first ones go.
    ties, _ = prune_to_sparsity(np.ones((2, 2), "float32"), np.ones((2, 2), bool), 0.5, 1)
    np.testing.assert_array_equal(ties, [[False, False], [True, True]])


def test_unit_magnitudes_thresholded_equal_the_unit_masks():
    from tf_gradual_prune import masking

    rng = np.random.default_rng(0)
    inputs, units, gates = 5, 7, 4
    scores = rng.uniform(0.1, 1.0, units)
    magnitudes = masking.unit_magnitudes(scores, inputs, gates)
    assert magnitudes.shape == (inputs + units, gates * units)
    threshold = np.sort(scores)[3]
    alive = scores >= threshold
    kernel, recurrent, bias = masking.unit_masks(alive, inputs, gates, (2, gates * units))
    np.testing.assert_array_equal(magnitudes >= threshold, np.concatenate([kernel, recurrent]))
    assert bias.shape == (2, gates * units)
    np.testing.assert_array_equal(bias[0], np.tile(alive, gates))
    # Scores are over live rows only: other units' deaths do not lower them.
    kernel_w = rng.normal(size=(inputs, gates * units))
    recurrent_w = rng.normal(size=(units, gates * units))
    before = masking.unit_scores(kernel_w, recurrent_w, units)
    dead_rows = recurrent_w.copy()
    dead_rows[~alive] = 0
    after = masking.unit_scores(kernel_w, dead_rows, units, alive)
    assert np.all(after[alive] > 0.5 * before[alive])
    cell = keras.layers.LSTMCell(7)
    cell.build((None, inputs))
    assert masking.cell_units(cell) == (7, 4)
