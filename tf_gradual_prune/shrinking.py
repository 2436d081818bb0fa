"""Removing dead hidden units: a smaller dense model that computes the same.

A hidden unit of an LSTM, GRU or SimpleRNN layer whose columns in both
kernels (every gate) and whose biases are all zero outputs exactly zero at
every step (its cell state and candidate stay at `activation(0) = 0`), so
it can be taken out of the layer, with its row of the recurrent kernel and
the rows of the next layer's kernel that read it. What remains is a smaller
*dense* layer: it runs fast on every runtime and delegate, where sparse
kernels help only some. `GradualPruning(..., granularity="units")` prunes
this way; `export_tflite` calls `shrink_units` before converting.
"""

import keras
import numpy as np

from tf_gradual_prune import streaming

#: Layers between a recurrent layer and its reader that pass a zero feature
#: on as zero (checked on their activation) and have no per-feature weights.
_PASS_THROUGH = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
)


def _zero_stays_zero(activation):
    value = keras.activations.get(activation)(keras.ops.zeros((1,)))
    return float(keras.ops.convert_to_numpy(value)[0]) == 0.0


def dead_units(layer):
    """The hidden units of a recurrent layer that always output zero.

    Args:
        layer: A `keras.layers.LSTM`, `GRU` or `SimpleRNN`.

    Returns:
        A boolean NumPy array `(units,)`: true where the unit's kernel and
        recurrent-kernel columns (every gate) and biases are all zero.
    """
    cell = layer.cell
    units = cell.units
    columns = [keras.ops.convert_to_numpy(cell.kernel),
               keras.ops.convert_to_numpy(cell.recurrent_kernel)]
    if getattr(cell, "bias", None) is not None:
        bias = keras.ops.convert_to_numpy(cell.bias)
        columns.append(bias.reshape(-1, bias.shape[-1]))
    stacked = np.concatenate(columns, axis=0)
    return np.all(stacked.reshape(stacked.shape[0], -1, units) == 0, axis=(0, 1))


def _reader(chain, index):
    """The layer that reads recurrent layer `chain[index]`'s features, or a
    reason why none can drop its rows."""
    for layer, _ in chain[index + 1 :]:
        if isinstance(layer, _PASS_THROUGH):
            activation = getattr(layer, "activation", None)
            if isinstance(layer, keras.layers.Activation) and not _zero_stays_zero(activation):
                return None, f"{layer.name!r} maps 0 to a non-zero value"
            continue
        if isinstance(layer, (keras.layers.Dense, keras.layers.LSTM, keras.layers.GRU,
                              keras.layers.SimpleRNN)):
            return layer, None
        if isinstance(layer, keras.layers.TimeDistributed) and isinstance(
                layer.layer, keras.layers.Dense):
            return layer, None
        return None, f"it is read by {layer.name!r} ({type(layer).__name__})"
    return None, "it is the model's output"


def _columns(alive, gates):
    units = alive.size
    return np.concatenate([g * units + np.flatnonzero(alive) for g in range(gates)])


def shrink_units(model):
    """The model without the dead hidden units of its recurrent layers.

    Only models that are a chain of layers (see `streaming.layer_chain`)
    are shrunk, and only forward `LSTM`, `GRU` and `SimpleRNN` layers whose
    activation maps 0 to 0 and whose features are read by a `Dense` or
    recurrent layer (possibly through dropout or zero-preserving
    activations). The new model has the same inputs and outputs and
    computes the same values (up to float rounding); layer names are kept.

    Args:
        model: A built Keras model.

    Returns:
        `(new_model, report)`: `new_model` is `model` itself when nothing
        was removed; `report` is a dict with `"shrunk"` (layer name ->
        `[units before, units after]`) and `"kept"` (layer name -> why its
        dead units stay, for layers that have some).
    """
    report = {"shrunk": {}, "kept": {}}
    recurrent = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)
    try:
        chain = streaming.layer_chain(model)
    except ValueError as error:
        for layer in model.layers:
            if isinstance(layer, recurrent) and dead_units(layer).any():
                report["kept"][layer.name] = str(error)
        return model, report
    alive, readers = {}, {}
    for index, (layer, _) in enumerate(chain):
        if not isinstance(layer, recurrent):
            continue
        dead = dead_units(layer)
        if not dead.any():
            continue
        reason = None
        if dead.all():
            reason = "every unit is dead (the layer would be empty)"
        elif not _zero_stays_zero(layer.cell.activation):
            reason = "its activation maps 0 to a non-zero value"
        reader = None
        if reason is None:
            reader, reason = _reader(chain, index)
        if reason is not None:
            report["kept"][layer.name] = f"{int(dead.sum())} dead unit(s) kept: {reason}"
            continue
        alive[layer.name] = ~dead
        readers[reader.name] = layer.name
        report["shrunk"][layer.name] = [int(dead.size), int((~dead).sum())]
    if not alive:
        return model, report

    def clone(layer):
        config = layer.get_config()
        if layer.name in alive:
            config["units"] = int(alive[layer.name].sum())
        return type(layer).from_config(config)

    new = keras.models.clone_model(model, clone_function=clone)
    for layer, _ in chain:
        weights = layer.get_weights()
        if not weights:
            continue
        rows = alive.get(readers.get(layer.name))
        if layer.name in alive:
            keep = alive[layer.name]
            gates = weights[0].shape[-1] // keep.size
            columns = _columns(keep, gates)
            kernel, recurrent_kernel, *bias = weights
            weights = [kernel[:, columns], recurrent_kernel[keep][:, columns]]
            weights += [b[..., columns] for b in bias]
        if rows is not None:
            weights[0] = weights[0][rows]
        new.get_layer(layer.name).set_weights(weights)
    return new, report
