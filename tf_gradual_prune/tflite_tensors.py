"""What a `.tflite` file stores: its constant tensors and their encoding.

TFLite keeps a sparse tensor as its non-zero values in traversal order plus
per-dimension metadata (DENSE, or SPARSE_CSR with segments and indices), and
optionally splits dimensions into blocks (`block_map`). This module reads that
from the flatbuffer itself (the converter's Analyzer does not show it) and
decodes it back to a dense array, so an export can be checked tensor by
tensor.
"""

import collections

import numpy as np

StoredTensor = collections.namedtuple(
    "StoredTensor",
    ["subgraph", "name", "shape", "dtype", "format", "block", "stored_values",
     "zeros", "bytes", "index_bytes", "values", "scale"],
)
StoredTensor.__doc__ = """One constant tensor of a `.tflite` file.

Attributes:
    subgraph: Integer index of the subgraph (RNN loop bodies are subgraphs).
    name: String.
    shape: Tuple of the dense shape (FULLY_CONNECTED weights are `(out, in)`).
    dtype: numpy dtype of the stored values.
    format: `"dense"` or `"sparse"`.
    block: Tuple of block sizes per dimension (all 1 when not blocked).
    stored_values: Number of values the file stores for it.
    zeros: Number of zeros in the decoded tensor.
    bytes: Bytes of its buffer (the stored values).
    index_bytes: Bytes of its sparse index arrays (segments and indices),
        0 for a dense tensor.
    values: The decoded dense array (as stored: int8 for quantised weights).
    scale: For quantised tensors, the float scale broadcastable to `values`
        (per channel where the converter quantised per channel); else None.
"""

_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64,
           7: np.int16, 9: np.int8}


def _schema():
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


_INDEX_WIDTH = {1: 4, 2: 2, 3: 1}  # Int32Vector, Uint16Vector, Uint8Vector


def _index_bytes(sparsity):
    total = 0
    for meta in sparsity.dimMetadata:
        for kind, array in (
            (meta.arraySegmentsType, meta.arraySegments),
            (meta.arrayIndicesType, meta.arrayIndices),
        ):
            if array is not None and array.values is not None:
                total += _INDEX_WIDTH.get(int(kind), 4) * len(array.values)
    return total


def _index_array(union_value):
    """An int array from a DimensionMetadata segments/indices union."""
    if union_value is None:
        return np.zeros(0, np.int64)
    return np.asarray(union_value.values, dtype=np.int64)


def decode_sparse(values, sparsity, shape):
    """A dense array from TFLite's sparse encoding.

    Args:
        values: 1-D array of stored values, in traversal order.
        sparsity: The tensor's `SparsityParametersT`.
        shape: The dense shape.

    Returns:
        A numpy array of `shape`.
    """
    shape = tuple(int(d) for d in shape)
    order = [int(d) for d in sparsity.traversalOrder]
    block_map = [int(d) for d in (sparsity.blockMap if sparsity.blockMap is not None else [])]
    metas = sparsity.dimMetadata
    rank = len(shape)
    block_sizes = [int(metas[order.index(rank + i)].denseSize) for i in range(len(block_map))]
    # Walk the traversal dimensions, keeping per stored position its
    # coordinate in every expanded dimension (dims, then block dims).
    positions = np.zeros(1, np.int64)
    coords = {}
    for level, dim in enumerate(order):
        meta = metas[level]
        if meta.format == 0:  # DENSE
            size = int(meta.denseSize)
            children = np.arange(size)
            positions_new = (positions[:, None] * size + children[None, :]).ravel()
            new_coord = np.tile(children, len(positions))
            repeat = size
            coords = {k: np.repeat(v, repeat) for k, v in coords.items()}
        else:  # SPARSE_CSR
            segments = _index_array(meta.arraySegments)
            indices = _index_array(meta.arrayIndices)
            starts, ends = segments[positions], segments[positions + 1]
            counts = ends - starts
            positions_new = np.concatenate(
                [np.arange(s, e) for s, e in zip(starts, ends)]
            ) if len(positions) else np.zeros(0, np.int64)
            new_coord = indices[positions_new]
            coords = {k: np.repeat(v, counts) for k, v in coords.items()}
        coords[dim] = new_coord
        positions = positions_new
    index = []
    for d in range(rank):
        coordinate = coords[d]
        if d in block_map:
            size = block_sizes[block_map.index(d)]
            coordinate = coordinate * size + coords[rank + block_map.index(d)]
        index.append(coordinate)
    # A block may run past the end of its dimension (e.g. 16-blocks over 8
    # inputs): decode into the padded shape, then crop.
    padded = list(shape)
    for i, dim in enumerate(block_map):
        padded[dim] = -(-shape[dim] // block_sizes[i]) * block_sizes[i]
    dense = np.zeros(padded, dtype=values.dtype)
    dense[tuple(index)] = values[: len(index[0])]
    return dense[tuple(slice(0, d) for d in shape)]


def read_tensors(model, min_rank=2):
    """The constant tensors of rank >= `min_rank` in a `.tflite` model.

    Args:
        model: Bytes of a `.tflite` file, or its path.
        min_rank: Integer. Smaller tensors (biases, shapes) are skipped.

    Returns:
        A list of `StoredTensor`.
    """
    if isinstance(model, str):
        with open(model, "rb") as f:
            model = f.read()
    schema = _schema()
    root = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    found = []
    for index, subgraph in enumerate(root.subgraphs):
        for tensor in subgraph.tensors:
            buffer = root.buffers[tensor.buffer]
            data = getattr(buffer, "data", None)
            shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else []))
            if data is None or len(data) == 0 or len(shape) < min_rank:
                continue
            dtype = _DTYPES.get(int(tensor.type))
            if dtype is None:
                continue
            raw = np.frombuffer(bytes(np.asarray(data, np.uint8)), dtype=dtype)
            sparsity = tensor.sparsity
            if sparsity is not None:
                values = decode_sparse(raw, sparsity, shape)
                block_map = list(sparsity.blockMap if sparsity.blockMap is not None else [])
                order = list(sparsity.traversalOrder)
                block = [1] * len(shape)
                for i, dim in enumerate(block_map):
                    block[int(dim)] = int(
                        sparsity.dimMetadata[order.index(len(shape) + i)].denseSize)
                fmt = "sparse"
            else:
                values = raw.reshape(shape)
                block, fmt = [1] * len(shape), "dense"
            scale = None
            quantization = tensor.quantization
            if dtype == np.int8 and quantization is not None and quantization.scale is not None:
                scale = np.asarray(quantization.scale, np.float32)
                if scale.size > 1:
                    axis = int(quantization.quantizedDimension)
                    scale = scale.reshape([-1 if d == axis else 1 for d in range(len(shape))])
            found.append(
                StoredTensor(
                    subgraph=index,
                    name=(tensor.name.decode() if isinstance(tensor.name, bytes)
                          else str(tensor.name)),
                    shape=shape,
                    dtype=np.dtype(dtype),
                    format=fmt,
                    block=tuple(block),
                    stored_values=int(raw.size),
                    zeros=int(np.count_nonzero(values == 0)),
                    bytes=int(len(data)),
                    index_bytes=_index_bytes(sparsity) if sparsity is not None else 0,
                    values=values,
                    scale=scale,
                )
            )
    return found


def operator_names(model):
    """The set of builtin operator names a `.tflite` model uses."""
    if isinstance(model, str):
        with open(model, "rb") as f:
            model = f.read()
    schema = _schema()
    root = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return {
        names.get(max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode))
        for code in root.operatorCodes
    }
