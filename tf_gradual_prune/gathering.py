"""Recurrent layers whose output groups read few inputs, exported as gathers.

When each group of `n` consecutive outputs of a recurrent kernel reads only a
few of its inputs (what `GradualPruning(block_size=(1, n))` leaves), the
product `x @ W` is, group by group, a gather of those inputs and a small
dense product: one `GATHER` of `(groups, k)` input indices and one
`BATCH_MATMUL` of `(groups, 1, k)` by `(groups, k, n)`. The weights are
stored as these dense blocks and their indices (a block-sparse format of
their own: about the non-zeros plus one index per block), and the
products run on XNNPACK's dense kernels, where TFLite's builtin sparse
`FULLY_CONNECTED` kernels run a scalar loop on one thread and XNNPACK
densifies sparse weights. The input projection of every time step is taken
out of the recurrent loop: one gather and one product for the whole
sequence.

`export_tflite` builds such a copy of the model (`gathered_model`), times it
beside the sparse and dense encodings and keeps the fastest that reproduces
Keras (`encoding="auto"`). Any matrix can be written this way; it pays only
when the groups read few inputs, so `gathered_model` leaves layers whose
gathered products would not be at least `MAX_WORK` times smaller than the
dense ones.
"""

import keras
import numpy as np

from tf_gradual_prune import masking

#: Output group sizes a matrix is split into (the one with the least work,
#: counting padding, wins; a larger group breaks ties).
GROUP_SIZES = (256, 128, 64, 32, 16, 8)

#: A layer is gathered only if its gathered products do at most this share
#: of the dense multiply-adds (padding included).
MAX_WORK = 0.5

_CELLS = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)


def plan(matrix, group=None):
    """The gathered form of one `(inputs, outputs)` matrix.

    Args:
        matrix: NumPy array `(inputs, outputs)`.
        group: Integer, outputs per group; `None` picks from `GROUP_SIZES`
            the size with the least work (see `work`).

    Returns:
        `(indices, blocks)`: int32 `(groups, k)` input indices and float
        `(groups, k, group)` weights, with `k` the most inputs any group
        reads (groups that read fewer are padded with index 0 and zero
        weights; the last group is padded with zero outputs). Then
        `x @ matrix == (x[..., indices] @ blocks)` flattened over groups
        and cut to `outputs`.
    """
    outputs = matrix.shape[1]
    if group is None:
        sizes = [g for g in GROUP_SIZES if g <= outputs] or [outputs]
        group = min(sizes, key=lambda g: (work(matrix, g), -g))
    blocks, reads, k = _groups(matrix, group)
    groups = reads.shape[1]
    indices = np.zeros((groups, k), np.int32)
    values = np.zeros((groups, k, group), matrix.dtype)
    for g in range(groups):
        rows = np.flatnonzero(reads[:, g])
        indices[g, : rows.size] = rows
        values[g, : rows.size] = blocks[rows, g]
    return indices, values


def work(matrix, group):
    """Multiply-adds of the gathered product per row of inputs, padding
    included: `groups * k * group` (against `inputs * outputs` dense)."""
    _, reads, k = _groups(matrix, group)
    return reads.shape[1] * k * group


def _groups(matrix, group):
    """`(blocks, reads, k)` of a matrix split into groups of `group`
    outputs: the matrix padded with zero outputs to whole groups, as
    `(inputs, groups, group)`; which inputs each group reads, `(inputs,
    groups)`; and the most inputs any group reads (at least 1)."""
    inputs, outputs = matrix.shape
    groups = -(-outputs // group)
    padded = np.zeros((inputs, groups * group), matrix.dtype)
    padded[:, :outputs] = matrix
    blocks = padded.reshape(inputs, groups, group)
    reads = np.any(blocks != 0, axis=2)
    return blocks, reads, max(1, int(reads.sum(axis=0).max()))


def _product(x, indices, blocks, outputs):
    """`x @ matrix` from its gathered form; `x` is `(rows, inputs)`."""
    picked = keras.ops.take(x, indices, axis=1)  # (rows, groups, k)
    picked = keras.ops.transpose(picked, (1, 0, 2))  # (groups, rows, k)
    out = keras.ops.matmul(picked, blocks)  # (groups, rows, group)
    out = keras.ops.transpose(out, (1, 0, 2))
    out = keras.ops.reshape(out, (keras.ops.shape(x)[0], -1))
    return out if blocks.shape[0] * blocks.shape[2] == outputs else out[:, :outputs]


def _why_not(layer):
    """Why a recurrent layer cannot be gathered, or `None`."""
    if layer.stateful or layer.return_state:
        return "stateful or returns its state"
    if isinstance(layer, keras.layers.GRU) and not layer.cell.reset_after:
        return "GRU with reset_after=False (the reset gate scales the recurrent input)"
    return None


class _Direction:
    """One recurrent layer's weights in gathered form."""

    def __init__(self, layer):
        cell = layer.cell
        self.kind = type(layer).__name__
        self.units = cell.units
        self.go_backwards = layer.go_backwards
        self.activation = cell.activation
        self.recurrent_activation = getattr(cell, "recurrent_activation", None)
        kernel = masking.to_numpy(cell.kernel)
        recurrent = masking.to_numpy(cell.recurrent_kernel)
        self.variables = (cell.kernel, cell.recurrent_kernel)
        self.dense = (kernel, recurrent)
        self.outputs = kernel.shape[1]
        self.kernel = plan(kernel)
        self.recurrent = plan(recurrent)
        bias = masking.to_numpy(cell.bias) if cell.use_bias else None
        if bias is None:
            bias = np.zeros((2, self.outputs) if self.kind == "GRU" else self.outputs,
                            kernel.dtype)
        self.input_bias = bias[0] if bias.ndim == 2 else bias
        self.recurrent_bias = bias[1] if bias.ndim == 2 else None
        self.dense_work = kernel.size + recurrent.size
        self.work = sum(indices.size * blocks.shape[-1]
                        for indices, blocks in (self.kernel, self.recurrent))

    def matrices(self):
        """`(Keras variable, (indices, blocks), dense matrix)` of the
        kernel and the recurrent kernel."""
        return zip(self.variables, (self.kernel, self.recurrent), self.dense)


class _GatheredCell(keras.layers.Layer):
    """The recurrent step of a gathered layer: its input is the projected
    input of the step (bias included); it adds the gathered recurrent
    product and applies the cell's gates."""

    def __init__(self, direction, **kwargs):
        super().__init__(**kwargs)
        self.direction = direction
        self.state_size = [direction.units] * (2 if direction.kind == "LSTM" else 1)
        self.output_size = direction.units

    def build(self, input_shape):
        d = self.direction
        self.indices = self.add_weight(
            shape=d.recurrent[0].shape, dtype="int32", trainable=False, name="indices",
            initializer=keras.initializers.Constant(d.recurrent[0]))
        self.blocks = self.add_weight(
            shape=d.recurrent[1].shape, trainable=False, name="blocks",
            initializer=keras.initializers.Constant(d.recurrent[1]))
        if d.recurrent_bias is not None:
            self.recurrent_bias = self.add_weight(
                shape=d.recurrent_bias.shape, trainable=False, name="recurrent_bias",
                initializer=keras.initializers.Constant(d.recurrent_bias))

    def call(self, inputs, states):
        d = self.direction
        h = states[0]
        inner = _product(h, self.indices, self.blocks, d.outputs)
        if d.kind == "LSTM":
            z = inputs + inner
            i, f, g, o = keras.ops.split(z, 4, axis=-1)
            act, rec = d.activation, d.recurrent_activation
            c = rec(f) * states[1] + rec(i) * act(g)
            h = rec(o) * act(c)
            return h, [h, c]
        if d.kind == "GRU":
            inner = inner + self.recurrent_bias
            x_z, x_r, x_h = keras.ops.split(inputs, 3, axis=-1)
            r_z, r_r, r_h = keras.ops.split(inner, 3, axis=-1)
            rec = d.recurrent_activation
            z = rec(x_z + r_z)
            r = rec(x_r + r_r)
            candidate = d.activation(x_h + r * r_h)
            h = z * h + (1 - z) * candidate
            return h, [h]
        h = d.activation(inputs + inner)
        return h, [h]


class GatheredRecurrent(keras.layers.Layer):
    """An `LSTM`, `GRU` or `SimpleRNN` layer (or a `Bidirectional` one) in
    gathered form, for export: the same outputs as the layer it was built
    from, computed with gathers and small dense products.

    Args:
        layer: The built recurrent layer (not changed).
    """

    def __init__(self, layer, **kwargs):
        super().__init__(name=layer.name, **kwargs)
        # Padding masks (a Masking layer, a mask_zero embedding, a model's
        # own mask) reach `call`, which hands them to the loops as the
        # original layer does.
        self.supports_masking = True
        self.bidirectional = isinstance(layer, keras.layers.Bidirectional)
        sources = ([layer.forward_layer, layer.backward_layer] if self.bidirectional
                   else [layer])
        self.merge_mode = layer.merge_mode if self.bidirectional else None
        self.return_sequences = sources[0].return_sequences
        self.directions = [_Direction(source) for source in sources]
        self.loops = [
            keras.layers.RNN(_GatheredCell(d), return_sequences=self.return_sequences,
                             go_backwards=d.go_backwards)
            for d in self.directions
        ]
        self.dense_work = sum(d.dense_work for d in self.directions)
        self.work = sum(d.work for d in self.directions)

    def build(self, input_shape):
        self.projections = []
        for i, d in enumerate(self.directions):
            indices, blocks = d.kernel
            self.projections.append((
                self.add_weight(shape=indices.shape, dtype="int32", trainable=False,
                                name=f"indices_{i}",
                                initializer=keras.initializers.Constant(indices)),
                self.add_weight(shape=blocks.shape, trainable=False, name=f"blocks_{i}",
                                initializer=keras.initializers.Constant(blocks)),
                self.add_weight(shape=d.input_bias.shape, trainable=False, name=f"bias_{i}",
                                initializer=keras.initializers.Constant(d.input_bias)),
            ))
        steps_shape = tuple(input_shape[:2]) + (self.directions[0].outputs,)
        for loop in self.loops:
            loop.build(steps_shape)

    def call(self, inputs, mask=None):
        batch, steps = keras.ops.shape(inputs)[0], keras.ops.shape(inputs)[1]
        flat = keras.ops.reshape(inputs, (-1, keras.ops.shape(inputs)[2]))
        outputs = []
        for d, (indices, blocks, bias), loop in zip(self.directions, self.projections,
                                                     self.loops):
            projected = _product(flat, indices, blocks, d.outputs) + bias
            projected = keras.ops.reshape(projected, (batch, steps, d.outputs))
            out = loop(projected, mask=mask)
            if d.go_backwards and self.return_sequences and self.bidirectional:
                out = keras.ops.flip(out, axis=1)
            outputs.append(out)
        if not self.bidirectional:
            return outputs[0]
        forward, backward = outputs
        if self.merge_mode == "concat":
            return keras.ops.concatenate([forward, backward], axis=-1)
        if self.merge_mode == "sum":
            return forward + backward
        if self.merge_mode == "ave":
            return (forward + backward) / 2
        return forward * backward  # "mul"; other modes are not gathered

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences else None

    def compute_output_shape(self, input_shape):
        units = self.directions[0].units
        if self.bidirectional and self.merge_mode == "concat":
            units *= 2
        if self.return_sequences:
            return tuple(input_shape[:2]) + (units,)
        return (input_shape[0], units)


def _candidate(layer):
    """`(GatheredRecurrent or None, why not)` for one layer of the model."""
    inner = layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer
    if not isinstance(inner, _CELLS):
        return None, None
    if isinstance(layer, keras.layers.Bidirectional) and layer.merge_mode not in (
            "concat", "sum", "ave", "mul"):
        return None, f"merge_mode={layer.merge_mode!r}"
    sources = [layer.forward_layer, layer.backward_layer] if inner is not layer else [layer]
    for source in sources:
        reason = _why_not(source)
        if reason:
            return None, reason
    gathered = GatheredRecurrent(layer)
    share = gathered.work / gathered.dense_work
    if share > MAX_WORK:
        return None, (f"its output groups read too many inputs: gathered, it would do "
                      f"{share:.0%} of the dense work (at most {MAX_WORK:.0%})")
    return gathered, None


def gathered_model(model):
    """A copy of `model` whose recurrent layers compute with gathers.

    Each `LSTM`, `GRU` (`reset_after=True`) or `SimpleRNN` layer, alone or
    in a `Bidirectional` wrapper (merge mode concat, sum, ave or mul), that
    is not stateful and does not return its state, and whose gathered
    products do at most `MAX_WORK` of its dense multiply-adds, becomes a
    `GatheredRecurrent` layer with the same name; the other layers are
    shared with `model`. The copy computes the same outputs up to float
    rounding (`export_tflite` checks it in LiteRT before it keeps it);
    padding masks are applied as the original layers apply them.

    Args:
        model: A built Keras model (Sequential or functional).

    Returns:
        `(copy, report)`: `copy` is `None` when no layer was gathered;
        `report` is a dict with `"gathered"` (layer name -> share of the
        dense multiply-adds it does) and `"kept"` (layer name -> why it
        stays as it is).
    """
    report = {"gathered": {}, "kept": {}}
    replaced = {}
    for layer in model.layers:
        gathered, reason = _candidate(layer)
        if gathered is not None:
            replaced[id(layer)] = gathered
            report["gathered"][layer.name] = gathered.work / gathered.dense_work
        elif reason is not None:
            report["kept"][layer.name] = reason
    if not replaced:
        return None, report
    try:
        copy = keras.models.clone_model(
            model, clone_function=lambda layer: replaced.get(id(layer), layer))
    except (ValueError, TypeError, NotImplementedError) as error:
        report["kept"] = {name: f"the model cannot be cloned ({error})"
                          for name in report["gathered"]}
        report["gathered"] = {}
        return None, report
    return copy, report
