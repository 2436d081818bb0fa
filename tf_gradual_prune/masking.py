"""Which weights of a Keras model are prunable, and how sparse they are."""

import collections

import keras
import numpy as np

#: The kinds of weight matrix that can be selected for pruning.
KINDS = ("recurrent", "dense", "conv", "embedding")

_CONV_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)

PrunableWeight = collections.namedtuple(
    "PrunableWeight", ["name", "variable", "kind", "layer"]
)
PrunableWeight.__doc__ = """One prunable weight matrix.

Attributes:
    name: String. Where the matrix sits: the names of the layers that hold
        it, outermost first, and the variable's name, e.g.
        `bidirectional/forward_gru/gru_cell/kernel` (a `Sequential` model's
        own name leads, as in Keras' `variable.path`). It stays the same
        when the model is saved and reloaded, which `variable.path` does not.
    variable: The `keras.Variable`.
    kind: One of `KINDS`.
    layer: The layer (or cell) that owns it.
"""


def _sublayers(layer):
    """The layers directly inside `layer`, for the containers Keras has."""
    if isinstance(layer, keras.Model):
        return list(layer.layers)
    if isinstance(layer, keras.layers.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    if isinstance(layer, keras.layers.RNN):
        return [layer.cell]
    if isinstance(layer, keras.layers.StackedRNNCells):
        return list(layer.cells)
    if isinstance(layer, keras.layers.Wrapper):
        return [layer.layer]
    return []


def _walk(layer, ancestors=()):
    """Yields `(layer, ancestors)` for `layer` and everything inside it."""
    yield layer, ancestors
    for sub in _sublayers(layer):
        yield from _walk(sub, ancestors + (layer,))


def _weight_name(variable, layer, ancestors):
    """The stable name of `variable`, owned by `layer` below `ancestors`.

    Built from layer names, not from `variable.path`: the path records the
    name scopes open when the variable was created, and `.keras` loading
    builds the layers inside `Bidirectional` and other wrappers (and those
    of a `Sequential`) outside their parent's scope, so a reloaded model's
    paths lose those prefixes.
    """
    chain = ancestors + (layer,)
    root = chain[0]
    # A functional model builds its layers before it exists, so Keras leaves
    # its name out of their paths; a Sequential builds them in its own scope.
    if isinstance(root, keras.Model) and not isinstance(root, keras.Sequential):
        chain = chain[1:]
    return "/".join([item.name for item in chain] + [variable.name])


def _own_matrices(layer):
    """`(kind, variable)` for the prunable matrices `layer` itself owns."""
    if hasattr(layer, "recurrent_kernel") and hasattr(layer, "kernel"):
        # Any RNN cell (LSTM, GRU, SimpleRNN, ConvLSTM, custom ones that
        # follow Keras' naming): input and recurrent kernels, never biases.
        return [("recurrent", layer.kernel), ("recurrent", layer.recurrent_kernel)]
    if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)):
        return [("dense", layer.kernel)]
    if isinstance(layer, _CONV_LAYERS):
        return [("conv", layer.kernel)]
    if isinstance(layer, keras.layers.Embedding) or isinstance(
        getattr(layer, "embeddings", None), keras.Variable
    ):
        # Also other layers that own an `embeddings` matrix, such as
        # `models.TiedEmbedding` (the embedding that is the output layer too).
        return [("embedding", layer.embeddings)]
    return []


def _normalise_kinds(weights):
    if weights is None:
        return ("recurrent",)
    if weights == "all":
        return KINDS
    kinds = (weights,) if isinstance(weights, str) else weights
    try:
        kinds = tuple(kinds)
    except TypeError:
        raise TypeError(
            "`weights` must be a kind, a list of kinds or 'all'. "
            f"Received: weights={weights!r}"
        ) from None
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(
            f"`weights` must name kinds from {KINDS} or be 'all'. "
            f"Received: weights={weights!r}"
        )
    return kinds


def find_prunable_weights(model, weights=None, layers=None):
    """The weight matrices of `model` that a pruning selection covers.

    Walks into nested models, `Bidirectional` (both directions),
    `keras.layers.RNN(cell)`, `StackedRNNCells` and other wrappers. Biases
    and normalisation parameters are never selected.

    Args:
        model: A built `keras.Model` (or layer).
        weights: String, list of strings or `None`. The kinds to select,
            from `"recurrent"` (the input and recurrent kernels of every RNN
            cell), `"dense"`, `"conv"` and `"embedding"`, or `"all"`.
            `None` means `"recurrent"`. Defaults to `None`.
        layers: List of layer names or layer objects, or `None`. Only
            matrices inside these layers are selected (a `Bidirectional`
            layer covers both directions). Defaults to `None` (all layers).

    Returns:
        A list of `PrunableWeight`, in the model's layer order, without
        duplicates (a shared layer appears once).

    Raises:
        ValueError: if `weights` names an unknown kind, a name in `layers`
            matches no layer, or the selection is empty.
    """
    kinds = _normalise_kinds(weights)
    if not model.built:
        raise ValueError(
            f"The model must be built before pruning. Received: model "
            f"{model.name!r} with built=False (call it on data or give it "
            "an `Input`)."
        )
    walked = list(_walk(model))
    wanted = None
    if layers is not None:
        if isinstance(layers, (str, keras.layers.Layer)):
            layers = [layers]
        by_name = {layer.name: layer for layer, _ in walked}
        wanted = set()
        for item in layers:
            if isinstance(item, keras.layers.Layer):
                if not any(item is layer for layer, _ in walked):
                    raise ValueError(
                        f"`layers` names a layer that is not in the model. "
                        f"Received: layers item {item.name!r}"
                    )
                wanted.add(id(item))
            elif isinstance(item, str):
                if item not in by_name:
                    raise ValueError(
                        f"`layers` names a layer that is not in the model. "
                        f"Received: {item!r}; the model has "
                        f"{sorted(by_name)}"
                    )
                wanted.add(id(by_name[item]))
            else:
                raise TypeError(
                    "`layers` must hold layer names or layers. Received: "
                    f"{item!r} (of type {type(item).__name__})"
                )

    selected, seen = [], set()
    for layer, ancestors in walked:
        if wanted is not None and not any(
            id(a) in wanted for a in ancestors + (layer,)
        ):
            continue
        for kind, variable in _own_matrices(layer):
            if kind in kinds and id(variable) not in seen:
                seen.add(id(variable))
                selected.append(
                    PrunableWeight(
                        _weight_name(variable, layer, ancestors), variable, kind, layer
                    )
                )
    if not selected:
        raise ValueError(
            "The selection matches no prunable weight in model "
            f"{model.name!r}. Received: weights={weights!r}, "
            f"layers={_layer_names(layers)}. The model has "
            f"{_count_kinds(walked)}."
        )
    return selected


def _layer_names(layers):
    if layers is None:
        return None
    return [getattr(item, "name", item) for item in layers]


def _count_kinds(walked):
    counts = collections.Counter(
        kind for layer, _ in walked for kind, _ in _own_matrices(layer)
    )
    if not counts:
        return "no prunable matrices at all"
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


class SparsityTable:
    """Per-matrix sparsity of a model, printable as a table.

    Attributes:
        rows: List of dicts with keys `name`, `kind`, `shape`, `size`,
            `zeros` and `sparsity`.
    """

    def __init__(self, rows):
        self.rows = rows

    @property
    def size(self):
        """Number of weights in all rows."""
        return sum(row["size"] for row in self.rows)

    @property
    def zeros(self):
        """Number of weights that are exactly zero."""
        return sum(row["zeros"] for row in self.rows)

    @property
    def sparsity(self):
        """Share of all weights in the table that are exactly zero."""
        return self.zeros / self.size if self.size else 0.0

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, name):
        for row in self.rows:
            if row["name"] == name:
                return row
        raise KeyError(name)

    def to_markdown(self):
        lines = [
            "| weight | kind | shape | size | zeros | sparsity |",
            "|---|---|---|---:|---:|---:|",
        ]
        for row in self.rows + [self._total_row()]:
            lines.append(
                f"| {row['name']} | {row['kind']} | {row['shape']} | "
                f"{row['size']:,} | {row['zeros']:,} | {row['sparsity']:.4f} |"
            )
        return "\n".join(lines)

    def _total_row(self):
        return {
            "name": "total",
            "kind": "",
            "shape": "",
            "size": self.size,
            "zeros": self.zeros,
            "sparsity": self.sparsity,
        }

    def __str__(self):
        rows = self.rows + [self._total_row()]
        cells = [
            [
                r["name"],
                r["kind"],
                str(r["shape"]),
                f"{r['size']:,}",
                f"{r['zeros']:,}",
                f"{r['sparsity']:.4f}",
            ]
            for r in rows
        ]
        header = ["weight", "kind", "shape", "size", "zeros", "sparsity"]
        widths = [max(len(x) for x in col) for col in zip(header, *cells)]
        fmt = lambda row: "  ".join(  # noqa: E731
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths))
        )
        return "\n".join([fmt(header)] + [fmt(r) for r in cells])

    __repr__ = __str__


def sparsity_table(model, weights="all", layers=None):
    """Per-matrix sparsity (share of exact zeros) of any model.

    Args:
        model: A built `keras.Model`.
        weights: The kinds to report, as in `find_prunable_weights`.
            Defaults to `"all"`.
        layers: Restrict to these layers, as in `find_prunable_weights`.

    Returns:
        A `SparsityTable`; `str()` of it is an aligned table and
        `.sparsity` the share of zeros over all reported weights.

    Example:

    ```python
    print(tf_gradual_prune.sparsity_table(model))
    ```
    """
    rows = []
    for item in find_prunable_weights(model, weights=weights, layers=layers):
        values = to_numpy(item.variable)
        zeros = int(np.count_nonzero(values == 0))
        rows.append(
            {
                "name": item.name,
                "kind": item.kind,
                "shape": tuple(values.shape),
                "size": int(values.size),
                "zeros": zeros,
                "sparsity": zeros / values.size if values.size else 0.0,
            }
        )
    return SparsityTable(rows)


def check_block_size(block_size):
    """Validates a block size.

    Accepts an integer (that many consecutive input weights of one output),
    or a pair `(inputs, outputs)` in the kernel's own layout: tfmot's
    `(block, 1)` is the integer form; `(1, 32)` is one input weight read by
    32 consecutive outputs, the layout `export_tflite` gathers (see
    `gathering`).

    Returns:
        An integer >= 1 for blocks one output wide, else the pair as a
        tuple of two integers >= 1.
    """
    value = block_size
    if isinstance(value, list):
        value = tuple(value)
    parts = value if isinstance(value, tuple) and len(value) == 2 else (value, 1)
    if any(isinstance(p, bool) or not isinstance(p, (int, np.integer)) for p in parts):
        raise TypeError(
            "`block_size` must be an integer or a pair of integers `(inputs, "
            f"outputs)`. Received: block_size={block_size!r}"
        )
    for part in parts:
        if part < 1:
            raise ValueError(
                "`block_size` must be >= 1 (each entry of a pair too). Received: "
                f"block_size={block_size!r}"
            )
    inputs, outputs = int(parts[0]), int(parts[1])
    return inputs if outputs == 1 else (inputs, outputs)


def _block_pair(block_size):
    """`(inputs, outputs)` of a block size that `check_block_size` returned."""
    return block_size if isinstance(block_size, tuple) else (int(block_size), 1)


def to_numpy(value):
    """A variable's or tensor's value as a NumPy array, on every backend.

    A JAX array that spans several processes (multi-host
    `keras.distribution`) is read from this process's first shard: the
    weights this library reads are replicated, so every process sees the
    same values.
    """
    if isinstance(value, keras.Variable):
        value = value.value
    if not getattr(value, "is_fully_addressable", True):
        value = value.addressable_data(0)
    return keras.ops.convert_to_numpy(value)


def block_magnitudes(weights, block_size):
    """The largest |w| of each block of the last two axes.

    Keras kernels are laid out `(..., inputs, outputs)`: Dense `(in, out)`,
    RNN kernels `(in, gates * units)`, Conv `(*kernel, in, out)`. An integer
    block is `block_size` consecutive input weights of one output unit, the
    pattern TFLite's sparse FULLY_CONNECTED kernels run fast; a pair
    `(inputs, outputs)` spans that many inputs and outputs (`(1, 32)`: one
    input read by 32 consecutive outputs, what `gathering` exports). Where
    a size is not a multiple of the block, the last blocks are smaller
    (scored by the weights they have).

    Args:
        weights: An array (or a tensor or variable of any Keras backend) of
            rank >= 2.
        block_size: Integer >= 1 or a pair (see `check_block_size`).

    Returns:
        A NumPy array of shape `(..., ceil(inputs / block_inputs),
        ceil(outputs / block_outputs))`, in the dtype of `weights`.
    """
    magnitudes = np.abs(to_numpy(weights))
    rows, cols = _block_pair(block_size)
    if rows == cols == 1:
        return magnitudes
    shape = magnitudes.shape
    inputs, outputs = shape[-2:]
    pad_in, pad_out = -inputs % rows, -outputs % cols
    paddings = [(0, 0)] * (len(shape) - 2) + [(0, pad_in), (0, pad_out)]
    # Magnitudes are >= 0, so zero padding never wins a block's maximum.
    padded = np.pad(magnitudes, paddings)
    blocks = padded.reshape(
        shape[:-2] + ((inputs + pad_in) // rows, rows, (outputs + pad_out) // cols, cols))
    return blocks.max(axis=(-3, -1))


def expand_blocks(block_mask, block_size, shape):
    """A block-level mask (NumPy) repeated back to a matrix of `shape`
    (its last two axes; `block_magnitudes`' inverse)."""
    block_mask = np.asarray(block_mask)
    rows, cols = _block_pair(block_size)
    if rows == cols == 1:
        return block_mask
    inputs, outputs = shape[-2:]
    expanded = np.repeat(np.repeat(block_mask, rows, axis=-2), cols, axis=-1)
    return expanded[..., :inputs, :outputs]


def prune_below(values, mask, threshold, block_size):
    """The new mask of one matrix: `mask AND (block magnitude >= threshold)`.

    Args:
        values: NumPy array, the matrix's weights.
        mask: Boolean NumPy array of the same shape, the mask so far.
        threshold: Float. Blocks whose magnitude is below it are pruned (it
            is compared in the weights' dtype).
        block_size: Integer >= 1 or a pair (see `check_block_size`).

    Returns:
        A boolean NumPy array: masks only lose ones.
    """
    scores = block_magnitudes(values, block_size)
    keep = scores >= np.asarray(threshold, dtype=scores.dtype)
    return mask & expand_blocks(keep, block_size, values.shape)


def prune_to_sparsity(values, mask, sparsity, block_size):
    """The new mask of one matrix with `sparsity` of its blocks pruned.

    The smallest-magnitude live blocks are pruned until `round(blocks *
    (1 - sparsity))` remain (ties broken by position); blocks pruned before
    stay pruned, so a lower `sparsity` than the matrix already has prunes
    nothing.

    Args:
        values: NumPy array, the matrix's weights.
        mask: Boolean NumPy array of the same shape, the mask so far.
        sparsity: Float in [0, 1].
        block_size: Integer >= 1 or a pair (see `check_block_size`).

    Returns:
        A pair: the new boolean mask, and the largest block magnitude
        pruned (0.0 if none), which is the threshold this update amounts to.
    """
    scores = block_magnitudes(values, block_size)
    alive = block_magnitudes(mask.astype(scores.dtype), block_size) > 0
    # Pruned blocks score -1 and sort first, so masks stay monotone.
    flat = np.where(alive, scores, -np.ones_like(scores)).ravel()
    count = flat.size
    # float32 arithmetic and round-half-to-even, as the counts were always made.
    kept = int(np.round(np.float32(count) * (np.float32(1.0) - np.float32(sparsity))))
    n_prune = max(count - kept, count - int(np.count_nonzero(alive)))
    order = np.argsort(flat, kind="stable")[:n_prune]
    keep = np.ones(count, bool)
    keep[order] = False
    new = mask & expand_blocks(keep.reshape(scores.shape), block_size, values.shape)
    cut = float(max(flat[order].max(), 0.0)) if n_prune else 0.0
    return new, cut


def cell_units(cell):
    """`(units, gates)` of a recurrent cell: LSTM 4 gates, GRU 3,
    SimpleRNN 1 (kernel columns `gate * units + unit`, Keras' layout)."""
    units = getattr(cell, "units", None)
    kernel = getattr(cell, "kernel", None)
    columns = None if kernel is None else kernel.shape[-1]
    if not isinstance(units, (int, np.integer)) or not columns or columns % units:
        raise ValueError(
            f"Cell {cell.name!r} ({type(cell).__name__}) has no `units` that "
            "divides its kernel's columns: unit pruning needs Keras' LSTM, "
            "GRU or SimpleRNN layout."
        )
    return int(units), columns // int(units)


def unit_scores(kernel, recurrent_kernel, units, alive=None):
    """The root mean square of each hidden unit's weights: its columns in
    both kernels (every gate), over the input rows and the recurrent rows of
    the `alive` units (all by default). Over live rows only, so that a
    unit's score does not fall because other units died (their rows are
    zeros); a dead unit scores 0."""
    recurrent = to_numpy(recurrent_kernel)
    if alive is not None:
        recurrent = recurrent[np.asarray(alive, bool)]
    both = np.concatenate([to_numpy(kernel), recurrent], axis=0).astype(np.float64)
    squares = np.square(both).reshape(both.shape[0], -1, units)
    return np.sqrt(squares.mean(axis=(0, 1)))


def unit_magnitudes(scores, inputs, gates):
    """Per-weight magnitudes of one cell for unit pruning, `(inputs + units,
    gates * units)`: the input kernel's rows stacked on the recurrent
    kernel's. A weight scores its unit's score; a recurrent weight the
    smaller of its two units' (it dies with either). A threshold on these
    prunes whole units, and the share of them below it is the share of the
    cell's weights that the units' removal zeroes."""
    scores = np.asarray(scores)
    columns = np.tile(scores, gates)
    kernel = np.broadcast_to(columns, (inputs, columns.size))
    recurrent = np.minimum(scores[:, None], columns[None, :])
    return np.concatenate([kernel, recurrent], axis=0)


def unit_masks(alive, inputs, gates, bias_shape=None):
    """Kernel, recurrent-kernel and bias masks of one cell from its live
    units: a dead unit loses its columns in both kernels and its biases
    (so its output stays zero) and its row of the recurrent kernel."""
    alive = np.asarray(alive, bool)
    columns = np.tile(alive, gates)
    kernel = np.broadcast_to(columns, (inputs, columns.size)).copy()
    recurrent = alive[:, None] & columns[None, :]
    bias = None if bias_shape is None else np.broadcast_to(columns, bias_shape).copy()
    return kernel, recurrent, bias
