import keras
import numpy as np
import pytest

from tf_gradual_prune import gathering

L = keras.layers


def grouped_sparse(rng, inputs, outputs, group, density):
    """A matrix whose groups of `group` outputs each read about `density`
    of the inputs (the zeros `block_size=(1, group)` leaves)."""
    groups = -(-outputs // group)
    reads = rng.random((inputs, groups)) < density
    mask = np.repeat(reads, group, axis=1)[:, :outputs]
    return (rng.normal(size=(inputs, outputs)) * mask).astype("float32")


@pytest.mark.parametrize("inputs, outputs, group", [(12, 48, 8), (7, 30, 8), (5, 6, None)])
def test_plan_reproduces_the_product(inputs, outputs, group):
    rng = np.random.default_rng(0)
    matrix = grouped_sparse(rng, inputs, outputs, group or 2, 0.3)
    indices, blocks = gathering.plan(matrix, group)
    size = blocks.shape[-1]
    groups = -(-outputs // size)
    assert indices.shape == blocks.shape[:2] == (groups, indices.shape[1])
    # k is the most inputs any group reads: no group is cut short.
    reads = [np.flatnonzero(matrix[:, g * size:(g + 1) * size].any(axis=1)).size
             for g in range(groups)]
    assert indices.shape[1] == max(1, max(reads))
    x = rng.normal(size=(3, inputs)).astype("float32")
    gathered = np.einsum("rgk,gkn->rgn", x[:, indices], blocks).reshape(3, -1)[:, :outputs]
    np.testing.assert_allclose(gathered, x @ matrix, rtol=1e-5, atol=1e-5)


def test_plan_picks_the_group_with_the_least_work():
    rng = np.random.default_rng(1)
    matrix = grouped_sparse(rng, 64, 256, 32, 0.1)
    _, blocks = gathering.plan(matrix)
    chosen = blocks.shape[-1]
    assert gathering.work(matrix, chosen) == min(
        gathering.work(matrix, g) for g in gathering.GROUP_SIZES)
    # Groups of 32 read ~10% of the inputs; any larger group reads more.
    assert chosen <= 32
    assert gathering.work(matrix, chosen) < 0.3 * matrix.size


def sparsify(layer, rng, group=8, density=0.15):
    """Zeros `layer`'s kernels in (1, group) blocks and sets random biases."""
    for source in ([layer.forward_layer, layer.backward_layer]
                   if isinstance(layer, L.Bidirectional) else [layer]):
        cell = source.cell
        for variable in (cell.kernel, cell.recurrent_kernel):
            shape = tuple(variable.shape)
            variable.assign(grouped_sparse(rng, shape[0], shape[1], group, density))
        cell.bias.assign(rng.normal(size=tuple(cell.bias.shape)).astype("float32"))


CASES = [
    (kind, merge, sequences, backwards)
    for kind in (L.LSTM, L.GRU, L.SimpleRNN)
    for merge, sequences, backwards in (
        (None, True, False), (None, False, True), ("concat", True, False),
        ("sum", False, False), ("ave", True, False), ("mul", True, False))
]


@pytest.mark.parametrize("kind, merge, sequences, backwards", CASES)
def test_gathered_layers_compute_what_keras_computes(kind, merge, sequences, backwards):
    rng = np.random.default_rng(2)
    inner = kind(12, return_sequences=sequences, go_backwards=backwards)
    layer = L.Bidirectional(inner, merge_mode=merge) if merge else inner
    model = keras.Sequential([keras.Input((9, 5)), layer, L.Dense(3)])
    sparsify(layer, rng)
    copy, report = gathering.gathered_model(model)
    assert isinstance(copy.layers[0], gathering.GatheredRecurrent)
    assert copy.layers[1] is model.layers[1]  # the other layers are shared
    assert 0 < report["gathered"][layer.name] <= gathering.MAX_WORK
    x = rng.normal(size=(4, 9, 5)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(copy(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-5)


def test_layers_that_are_not_gathered_say_why():
    rng = np.random.default_rng(3)
    inputs = keras.Input((6, 4))
    dense_gru = L.GRU(8, return_sequences=True, name="dense_gru")  # nothing pruned
    old_gru = L.GRU(8, return_sequences=True, reset_after=False, name="old_gru")
    states = L.LSTM(8, return_state=True, name="states")
    x = old_gru(dense_gru(inputs))
    out, _, _ = states(x)
    model = keras.Model(inputs, L.Dense(2)(out))
    for layer in (old_gru, states):
        sparsify(layer, rng)
    copy, report = gathering.gathered_model(model)
    assert copy is None and report["gathered"] == {}
    assert "of the dense work" in report["kept"]["dense_gru"]
    assert "reset_after=False" in report["kept"]["old_gru"]
    assert "returns its state" in report["kept"]["states"]


def test_a_functional_model_keeps_its_other_layers():
    rng = np.random.default_rng(4)
    inputs = keras.Input((6, 4))
    lstm = L.LSTM(16, return_sequences=True)
    hidden = lstm(inputs)
    model = keras.Model(inputs, L.Dense(2)(L.GRU(8)(hidden)))
    sparsify(lstm, rng)
    copy, report = gathering.gathered_model(model)
    assert list(report["gathered"]) == [lstm.name]
    assert "of the dense work" in report["kept"][model.layers[2].name]
    x = rng.normal(size=(2, 6, 4)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(copy(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("merge", [None, "concat"])
@pytest.mark.parametrize("sequences", [True, False])
def test_padding_masks_are_applied_as_keras_applies_them(merge, sequences):
    rng = np.random.default_rng(5)
    inner = L.LSTM(16, return_sequences=sequences)
    layer = L.Bidirectional(inner, merge_mode=merge) if merge else inner
    head = [L.GRU(8)] if sequences else []  # reads the mask the layer passes on
    model = keras.Sequential([keras.Input((6, 4)), L.Masking(), layer, *head, L.Dense(2)])
    sparsify(layer, rng)
    copy, report = gathering.gathered_model(model)
    assert layer.name in report["gathered"]
    x = rng.normal(size=(3, 6, 4)).astype("float32")
    x[0, 4:] = 0.0  # padding, masked out
    x[1, 2:] = 0.0
    np.testing.assert_allclose(keras.ops.convert_to_numpy(copy(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-5)
