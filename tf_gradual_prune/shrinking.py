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
        if isinstance(layer, keras.layers.Bidirectional) and isinstance(
                layer.forward_layer, (keras.layers.LSTM, keras.layers.GRU,
                                      keras.layers.SimpleRNN)):
            return layer, None
        if isinstance(layer, keras.layers.TimeDistributed) and isinstance(
                layer.layer, keras.layers.Dense):
            return layer, None
        return None, f"it is read by {layer.name!r} ({type(layer).__name__})"
    return None, "it is the model's output"


def _columns(keep, units, gates):
    """Kernel columns of the kept units (indices), every gate."""
    return np.concatenate([g * units + keep for g in range(gates)])


def _sliced(weights, keep, units, rows=None):
    """A recurrent layer's weights for the `keep` units (and input `rows`)."""
    kernel, recurrent_kernel, *bias = weights
    columns = _columns(keep, units, kernel.shape[-1] // units)
    kernel = kernel[:, columns] if rows is None else kernel[rows][:, columns]
    return [kernel, recurrent_kernel[keep][:, columns]] + [b[..., columns] for b in bias]


def _plan(layer):
    """`(keep, features, reason)` for one layer: the kept unit indices per
    direction, the indices of its kept output features, or why not."""
    recurrent = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)
    if isinstance(layer, keras.layers.Bidirectional):
        directions = [layer.forward_layer, layer.backward_layer]
        if not all(isinstance(d, recurrent) for d in directions):
            return None, None, None
        if layer.merge_mode != "concat":
            return None, None, f"merge_mode={layer.merge_mode!r} adds up the directions"
    elif isinstance(layer, recurrent):
        directions = [layer]
    else:
        return None, None, None
    dead = [dead_units(d) for d in directions]
    if not any(d.any() for d in dead):
        return None, None, None
    if not all(_zero_stays_zero(d.cell.activation) for d in directions):
        return None, None, "its activation maps 0 to a non-zero value"
    # Both directions of a Bidirectional layer keep the same number of units
    # (Keras needs it): the one with fewer live units keeps some dead ones.
    size = max(int((~d).sum()) for d in dead)
    if size == 0:
        return None, None, "every unit is dead (the layer would be empty)"
    keep = [np.sort(np.argsort(d, kind="stable")[:size]) for d in dead]
    units = directions[0].units
    features = np.concatenate([k + i * units for i, k in enumerate(keep)])
    return keep, features, None


def shrink_units(model):
    """The model without the dead hidden units of its recurrent layers.

    Only models that are a chain of layers (see `streaming.layer_chain`)
    are shrunk, and only `LSTM`, `GRU` and `SimpleRNN` layers (also inside
    `Bidirectional` with `merge_mode="concat"`, both directions then keeping
    as many units as the livelier one needs) whose activation maps 0 to 0
    and whose features are read by a `Dense` or recurrent layer (possibly
    through dropout or zero-preserving activations). The new model has the
    same inputs and outputs and computes the same values (up to float
    rounding); layer names are kept.

    Args:
        model: A built Keras model.

    Returns:
        `(new_model, report)`: `new_model` is `model` itself when nothing
        was removed; `report` is a dict with `"shrunk"` (layer name ->
        `[units before, units after]`, per direction) and `"kept"` (layer
        name -> why its dead units stay, for layers that have some).
    """
    report = {"shrunk": {}, "kept": {}}
    try:
        chain = streaming.layer_chain(model)
    except ValueError as error:
        for layer in model.layers:
            keep, _, reason = _plan(layer)
            if keep is not None or reason is not None:
                report["kept"][layer.name] = str(error)
        return model, report
    plans, readers = {}, {}
    for index, (layer, _) in enumerate(chain):
        keep, features, reason = _plan(layer)
        if keep is None and reason is None:
            continue
        reader = None
        if reason is None:
            reader, reason = _reader(chain, index)
        if reason is not None:
            report["kept"][layer.name] = f"dead unit(s) kept: {reason}"
            continue
        plans[layer.name] = keep
        readers[reader.name] = features
        units = (layer.forward_layer if isinstance(layer, keras.layers.Bidirectional)
                 else layer).units
        report["shrunk"][layer.name] = [units, int(keep[0].size)]
    if not plans:
        return model, report

    def clone(layer):
        config = layer.get_config()
        # Deserialising a wrapped layer (Bidirectional, TimeDistributed)
        # builds it for its saved input shape, which a shrunk layer changes.
        for key in ("layer", "backward_layer"):
            if isinstance(config.get(key), dict):
                config[key].pop("build_config", None)
        if layer.name in plans:
            size = int(plans[layer.name][0].size)
            if isinstance(layer, keras.layers.Bidirectional):
                for key in ("layer", "backward_layer"):
                    if key in config:
                        config[key]["config"]["units"] = size
            else:
                config["units"] = size
        return type(layer).from_config(config)

    new = keras.models.clone_model(model, clone_function=clone)
    for layer, _ in chain:
        if not layer.get_weights():
            continue
        rows = readers.get(layer.name)
        target = new.get_layer(layer.name)
        if isinstance(layer, keras.layers.Bidirectional) and layer.name in plans:
            for old, fresh, keep in zip((layer.forward_layer, layer.backward_layer),
                                        (target.forward_layer, target.backward_layer),
                                        plans[layer.name]):
                fresh.set_weights(_sliced(old.get_weights(), keep, old.units, rows))
            continue
        if isinstance(layer, keras.layers.Bidirectional) and rows is not None:
            for old, fresh in ((layer.forward_layer, target.forward_layer),
                               (layer.backward_layer, target.backward_layer)):
                weights = old.get_weights()
                weights[0] = weights[0][rows]
                fresh.set_weights(weights)
            continue
        weights = layer.get_weights()
        if layer.name in plans:
            weights = _sliced(weights, plans[layer.name][0], layer.units, rows)
        elif rows is not None:
            weights[0] = weights[0][rows]
        target.set_weights(weights)
    return new, report
