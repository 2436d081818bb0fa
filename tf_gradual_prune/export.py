"""Export a pruned Keras model to a `.tflite` file that stores it sparse.

How the sparsity survives conversion:

- The model is exported as a SavedModel with a fixed batch of 1 (the
  on-device case) and converted from there. Keras 3 recurrent layers then
  become a `WHILE` loop of `FULLY_CONNECTED` ops whose kernels are plain
  constants, which the converter can encode sparse. (A tf_keras LSTM would
  become the fused `UNIDIRECTIONAL_SEQUENCE_LSTM` op, whose weights are never
  stored sparse; this library is Keras 3 throughout, so that never happens.)
- `tf.lite.Optimize.EXPERIMENTAL_SPARSITY` is always on. The converter keeps
  tensors with fewer than 30% zeros dense. Unstructured sparsity is stored
  CSR-like and expanded by a `DENSIFY` op at load time (a smaller file, no
  speed-up); blocks of 4 consecutive input weights (`block_size=4` in
  `GradualPruning`) are stored block-sparse and run on sparse kernels.
- Recurrent layers whose groups of outputs read few inputs (`block_size=(1,
  n)`) can instead be stored *gathered* (`gathering`): per group, the input
  indices and a small dense block, run as a gather and a batched product
  on XNNPACK's dense kernels. With `encoding="auto"` the export converts
  such a copy too, and the three candidates (sparse, dense, gathered) are
  timed; the fastest that reproduces Keras is written, and the report
  says why.
- Before the file is final it is run in the LiteRT interpreter on sample
  inputs and compared with Keras, with and without the XNNPACK delegate. The
  XNNPACK delegate rejects or miscomputes sparse int8 models; the report
  recommends the interpreter settings that gave correct results, and an
  export that no setting runs correctly raises and leaves no file.
"""

import contextlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings

import keras
import numpy as np

from tf_gradual_prune import (
    checks,
    compat,
    files,
    gathering,
    masking,
    runtime,
    shrinking,
    tflite_tensors,
)
from tf_gradual_prune import streaming as streaming_module
from tf_gradual_prune.version import __version__

#: Export modes: float32, dynamic-range int8 weights, full-integer int8.
QUANTIZATIONS = ("float32", "dynamic_int8", "int8")

#: Default verification tolerance per mode: the largest absolute difference
#: from Keras, relative to max(1, largest |Keras output|).
DEFAULT_TOLERANCE = {"float32": 1e-4, "dynamic_int8": 0.1, "int8": 0.2}

#: The converter stores a tensor sparse only from this share of zeros on.
SPARSE_MIN_ZEROS = 0.3

#: How `export_tflite` may store the weights.
ENCODINGS = ("auto", "sparse", "dense", "gathered")

#: With `encoding="auto"`, another encoding replaces the sparse one (and
#: the gathered one replaces the better of those) only if its batch-1
#: latency is below this share of it: the smaller file wins near-ties.
FASTER = 0.95


class ExportReport:
    """What `export_tflite` wrote, printable as a table.

    Attributes:
        path: String path of the `.tflite` file.
        sidecar_path: String path of the JSON sidecar.
        quantization: One of `QUANTIZATIONS`.
        tensors: List of dicts, one per stored weight tensor of rank >= 2:
            `name`, `shape`, `keras_weight` (the Keras weight it holds, if
            found), `sparsity`, `format` (`"dense"`/`"sparse"`, or
            `"gathered"`: one row per gathered matrix, its bytes those of
            its indices and blocks), `block`, `bytes`.
        size_bytes: Size of the exported file.
        dense_size_bytes: Size of the same model exported without sparse
            encoding (same quantization).
        sparse_tensors: Number of stored tensors encoded sparse. With none
            (and not gathered), the file is the dense export (up to
            metadata), and the report leaves out the comparison with it.
        errors: Dict delegate -> max relative error against Keras (or the
            load error's text).
        delegate: The recommended interpreter delegate: of the settings
            that reproduce Keras, the faster in a short batch-1 timing.
        tolerance: The tolerance the errors were held to.
        max_error: The error of the recommended setting.
        not_sparse: Names of Keras weights with >= 30% zeros that are not
            stored sparse.
        other_constants_bytes: Bytes of the other constants of rank >= 2
            (not Keras weight matrices).
        encoding: `"sparse"`, `"dense"` or `"gathered"`, how the file
            stores its weights.
        timings: Dict encoding -> {delegate: batch-1 ms} of the short
            timings the choice of encoding and delegate was made on.
        gathered: Dict from `gathering.gathered_model`: `"gathered"` (layer
            -> share of the dense multiply-adds its gathered form does) and
            `"kept"` (layer -> why it cannot be gathered); empty dicts when
            no gathered copy was tried.
        shrunk: Dict from `shrinking.shrink_units`: `"shrunk"` (layer ->
            `[units before, after]`) and `"kept"` (layer -> why its dead
            units stayed); empty dicts with `shrink_units=False`.
        streaming: For a streaming export, the sidecar's `"streaming"`
            entry (chunk and output frames, the state tensors, the error of
            the chunked run against the offline model); else `None`.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    @property
    def xnnpack_ok(self):
        """Whether the XNNPACK delegate loaded and reproduced Keras."""
        error = self.errors.get("xnnpack")
        return isinstance(error, float) and error <= self.tolerance

    @property
    def size_ratio(self):
        """Dense export size divided by this export's size."""
        return self.dense_size_bytes / self.size_bytes

    def to_dict(self):
        return dict(self.__dict__)

    def __str__(self):
        header = ("tensor", "shape", "sparsity", "format", "block", "bytes")
        rows = [
            (
                t["keras_weight"],
                "x".join(str(d) for d in t["shape"]),
                f"{t['sparsity']:.3f}",
                t["format"],
                "x".join(str(d) for d in t["block"]),
                f"{t['bytes']:,}",
            )
            for t in self.tensors
        ]
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(6)]
        line = lambda r: "  ".join(  # noqa: E731
            c.ljust(w) if i in (0, 3) else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths))
        )
        errors = ", ".join(
            f"{k}: {v:.2e}" if isinstance(v, float) else f"{k}: fails to load"
            for k, v in self.errors.items()
        )
        return "\n".join(
            [line(header)]
            + [line(r) for r in rows]
            + [
                "",
                f"file: {self.path} ({self.quantization})",
                f"other constants: {self.other_constants_bytes:,} bytes",
                (
                    f"size: {self.size_bytes:,} bytes; dense export "
                    f"{self.dense_size_bytes:,} bytes ({self.size_ratio:.2f}x)"
                    if self.sparse_tensors or self.encoding == "gathered"
                    else f"size: {self.size_bytes:,} bytes (no tensor is stored sparse: "
                    "this is the dense export)"
                ),
                f"max error against Keras: {errors}",
                f"recommended interpreter: delegate={self.delegate!r}"
                + (
                    " (XNNPACK fails or miscomputes this model: run it without)"
                    if not self.xnnpack_ok
                    else " (the faster of the correct settings)"
                ),
            ]
            + [self._encoding_line()]
            + [
                f"shrunk: {name} {before} -> {after} units (dead units removed)"
                for name, (before, after) in self.shrunk["shrunk"].items()
            ]
            + [f"not shrunk: {name}: {why}" for name, why in self.shrunk["kept"].items()]
            + (
                [
                    f"streaming: {self.streaming['chunk_frames']} frames a call, "
                    f"{len(self.streaming['states'])} state tensor(s) carried; "
                    "chunked run against the offline model: max error "
                    f"{self.streaming['max_error_vs_offline']:.2e}"
                ]
                if self.streaming
                else []
            )
        )

    def _encoding_line(self):
        best = {k: min(v.values()) for k, v in self.timings.items() if v}
        if len(best) < 2:
            return f"encoding: {self.encoding}"
        if self.encoding == "sparse":
            why = "no other encoding was at least 5% faster"
        elif self.encoding == "dense":
            why = "the dense encoding was at least 5% faster than the sparse one"
        else:
            why = "at least 5% faster than the sparse and dense encodings"
        others = ", ".join(f"{k} {v:.3f} ms" for k, v in best.items() if k != self.encoding)
        lines = [f"encoding: {self.encoding} ({why}: {best[self.encoding]:.3f} ms vs "
                 f"{others}, batch 1, 1 thread)"]
        if self.encoding == "gathered":
            lines += [f"gathered: {name} ({share:.0%} of the dense multiply-adds)"
                      for name, share in self.gathered["gathered"].items()]
        return "\n".join(lines)

    __repr__ = __str__


def _input_specs(model, input_shape=None):
    import tensorflow as tf

    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            f"Model {model.name!r} has no known inputs: build it with "
            "`keras.Input` (a Sequential or functional model)."
        )
    shapes = input_shape
    if shapes is not None and (not shapes or not isinstance(shapes[0], (tuple, list))):
        shapes = [shapes]
    if shapes is not None and len(shapes) != len(inputs):
        raise ValueError(
            f"`input_shape` must give one shape per model input ({len(inputs)}). "
            f"Received: input_shape={input_shape!r}"
        )
    specs = []
    for i, tensor in enumerate(inputs):
        shape = tuple(tensor.shape[1:])
        if shapes is not None:
            fixed = tuple(shapes[i])
            if len(fixed) != len(shape) or any(
                    d is not None and d != f for d, f in zip(shape, fixed)) or any(
                    not isinstance(f, int) or f < 1 for f in fixed):
                raise ValueError(
                    f"`input_shape` {fixed} does not fit input {tensor.name!r} of shape "
                    f"{shape} (without the batch; give a positive size for every "
                    f"dimension). Received: input_shape={input_shape!r}"
                )
            shape = fixed
        if any(d is None for d in shape):
            raise ValueError(
                f"Input {tensor.name!r} has shape {tuple(tensor.shape)}: the "
                "export needs fixed sizes besides the batch (TFLite runs "
                "batch 1 with static shapes); pass `input_shape`, e.g. "
                f"input_shape={tuple(100 if d is None else d for d in shape)}."
            )
        specs.append(tf.TensorSpec((1,) + shape, tensor.dtype or "float32"))
    return specs


def _check_arrays(name, data, specs):
    """Validates `(n, *shape)` arrays (a list for several inputs)."""
    arrays = data if isinstance(data, (list, tuple)) else [data]
    if len(arrays) != len(specs):
        raise ValueError(
            f"`{name}` must hold {len(specs)} array(s), one per model input. "
            f"Received {len(arrays)}."
        )
    checked = []
    for array, spec in zip(arrays, specs):
        array = np.asarray(array, dtype=np.float32)
        expected = tuple(spec.shape[1:])
        if array.ndim != len(expected) + 1 or array.shape[1:] != expected:
            raise ValueError(
                f"`{name}` must have shape (n, {', '.join(map(str, expected))}). "
                f"Received shape {array.shape}."
            )
        if len(array) == 0:
            raise ValueError(f"`{name}` is empty. Received shape {array.shape}.")
        checked.append(array)
    return checked


def _convert(saved_model_dir, quantization, sparse, representative):
    """One conversion, in this process (called by `_convert_worker`)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    optimizations = []
    if quantization != "float32":
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if quantization == "int8":

        def samples():
            for i in range(len(representative[0])):
                yield [a[i : i + 1] for a in representative]

        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # The Keras 3 path prints "Saved artifact at ..." to stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def _convert_worker(workdir, quantization, variants="sparse,dense"):
    """Entry point of the conversion subprocess: writes `<variant>.tflite`
    for each of the comma-separated `variants` (`sparse`, `dense`)."""
    representative = None
    if quantization == "int8":
        with np.load(os.path.join(workdir, "representative.npz")) as f:
            representative = [f[k] for k in sorted(f.files)]
    saved = os.path.join(workdir, "saved_model")
    for variant in variants.split(","):
        data = _convert(saved, quantization, variant == "sparse", representative)
        name = variant + ".tflite"
        with open(os.path.join(workdir, name), "wb") as f:
            f.write(data)


def _convert_both(workdir, quantization, variants=("sparse", "dense")):
    """Runs the converter in a subprocess: a converter crash (TF 2.17
    segfaults on some graphs) becomes an error here, not the end of the
    caller's process. Returns the bytes of each of `variants`."""
    code = (
        "import sys; from tf_gradual_prune.export import _convert_worker; "
        "_convert_worker(sys.argv[1], sys.argv[2], sys.argv[3])"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-c", code, workdir, quantization, ",".join(variants)],
        capture_output=True, text=True, env=env,
    )
    if done.returncode != 0:
        unsupported = sorted(set(re.findall(r"'tf\.(\w+)' op is neither", done.stderr)))
        if unsupported:
            detail = (
                "TensorFlow ops with no TFLite builtin kernel: "
                + ", ".join(unsupported)
                + ". Replace them in the model (TFLite's builtin op set is "
                "what runs on Android without the Flex delegate)."
            )
        else:
            lines = [
                line for line in done.stderr.splitlines()
                if "error" in line.lower() and "WARNING" not in line
            ]
            detail = (" ".join(lines) or done.stderr)[-2000:]
        how = (
            f"crashed with signal {-done.returncode}"
            if done.returncode < 0 else f"failed (exit {done.returncode})"
        )
        raise ValueError(
            f"The TFLite converter {how} on this model "
            f"(quantization={quantization!r}): {detail}"
        )
    out = []
    for variant in variants:
        with open(os.path.join(workdir, variant + ".tflite"), "rb") as f:
            out.append(f.read())
    return tuple(out)


def _set_unroll(config):
    if isinstance(config, dict):
        if "unroll" in config:
            config["unroll"] = True
        for value in config.values():
            _set_unroll(value)
    elif isinstance(config, list):
        for value in config:
            _set_unroll(value)


def _unrolled(model):
    """A copy of `model` with every RNN layer unrolled over its fixed
    time steps (TF 2.17's converter crashes calibrating a WHILE loop for
    full-integer int8; unrolled, the same kernels become plain constants)."""

    def clone(layer):
        config = layer.get_config()
        _set_unroll(config)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _match_keras_weights(stored, model):
    """Names each stored tensor after the Keras weight whose values it holds."""
    candidates = []
    for item in masking.find_prunable_weights(model, weights="all"):
        values = keras.ops.convert_to_numpy(item.variable)
        candidates.append((item.name, values, values.T if values.ndim == 2 else None))
    names = []
    for tensor in stored:
        found = None
        for name, values, transposed in candidates:
            for view in (transposed, values):
                if view is None or view.shape != tensor.shape:
                    continue
                if _holds(tensor, view):
                    found = name
                    break
            if found:
                break
        names.append(found)
    return names


def _verify(data, model, samples, tolerance):
    """Max relative error against Keras per delegate (or the load error)."""
    expected = model(samples if len(samples) > 1 else samples[0], training=False)
    expected = [keras.ops.convert_to_numpy(t) for t in keras.tree.flatten(expected)]
    scale = max(1.0, max(float(np.max(np.abs(e))) for e in expected))
    errors = {}
    for delegate in runtime.DELEGATES:
        try:
            runner = runtime.LiteRTRunner(data, delegate=delegate)
            got = runner.run(samples)
        except (ValueError, RuntimeError) as error:
            errors[delegate] = str(error)
            continue
        got = got if isinstance(got, list) else [got]
        errors[delegate] = max(
            float(np.max(np.abs(g.astype(np.float64) - e))) for g, e in zip(got, expected)
        ) / scale
    good = [d for d, e in errors.items() if isinstance(e, float) and e <= tolerance]
    if good:
        # Among the settings that are correct, recommend the faster: XNNPACK
        # is not always faster on sparse models.
        sample = [a[:1] for a in samples]
        speed = {
            d: runtime.LiteRTRunner(data, delegate=d).latency_ms(
                sample, repeats=10, warmup=2, rounds=3
            )
            for d in good
        }
        good = sorted(good, key=speed.get)
    if not good:
        raise ValueError(
            "The exported model does not reproduce Keras within the tolerance "
            f"{tolerance} (max |difference| / max(1, max |output|)) with any "
            f"interpreter setting: {errors}. No file was written."
        )
    return errors, good[0], speed


def _utterances(sample_inputs, offline, chunk_frames):
    """Whole-chunk sequences `(n, frames, features)` for the stream check."""
    features = tuple(offline.inputs[0].shape[2:])
    if sample_inputs is None:
        rng = np.random.default_rng(0)
        return rng.normal(size=(2, 6 * chunk_frames) + features).astype(np.float32)
    array = np.asarray(sample_inputs, dtype=np.float32)
    if array.ndim != 2 + len(features) or array.shape[2:] != features or not len(array) \
            or array.shape[1] < chunk_frames:
        raise ValueError(
            "With streaming=True, `sample_inputs` are whole sequences of shape "
            f"(n, frames >= chunk_frames={chunk_frames}, {', '.join(map(str, features))}). "
            f"Received shape {array.shape}."
        )
    return array[:, : array.shape[1] // chunk_frames * chunk_frames]


def _verify_stream(data, delegate, offline, utterances, tolerance):
    """Runs each utterance through the export chunk by chunk and compares
    with the offline Keras model over the same frames."""
    runner = runtime.StreamingRunner(data, delegate=delegate)
    expected = keras.tree.flatten(offline(utterances, training=False))
    expected = [keras.ops.convert_to_numpy(t) for t in expected]
    scale = max(1.0, max(float(np.max(np.abs(e))) for e in expected))
    error = 0.0
    for i, utterance in enumerate(utterances):
        got = runner.run_stream(utterance)
        got = got if isinstance(got, list) else [got]
        for g, e in zip(got, expected):
            if g.shape[1:] != e.shape[1:]:
                raise ValueError(
                    f"The streamed output has shape {g.shape[1:]} per sequence where "
                    f"the offline model gives {e.shape[1:]}. No file was written."
                )
            error = max(error, float(np.max(np.abs(g[0].astype(np.float64) - e[i]))) / scale)
    if error > tolerance:
        raise ValueError(
            "Streamed chunk by chunk in LiteRT, the export does not reproduce "
            f"the offline Keras model: max |difference| / max(1, max |output|) "
            f"= {error:.3g} > tolerance {tolerance}. No file was written."
        )
    frames = runner.output_details[0]["shape"]
    return {"error": error, "output_frames": int(frames[1]) if len(frames) >= 3 else None}


def export_tflite(
    model,
    path,
    quantization="float32",
    representative_data=None,
    sample_inputs=None,
    tolerance=None,
    metadata=None,
    input_shape=None,
    streaming=False,
    chunk_frames=None,
    shrink_units=True,
    encoding="auto",
):
    """Exports a (pruned) Keras model to `.tflite` with sparse weights.

    One call from a trained Keras 3 model to a verified `.tflite` file and a
    JSON sidecar beside it (same name, `.json`) that describes inputs,
    outputs, the recommended interpreter settings and your `metadata`.

    Keras 3.15's own `model.export(path, format="litert", **converter_kwargs)`
    can carry the sparse encoding too: given a batch-1 `input_signature`,
    `optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY]` and
    `target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}` it
    stores the same sparse tensors as this function (tests/export_test.py
    checks it). Its defaults do not suit a recurrent model: with a dynamic
    batch and `SELECT_TF_OPS` allowed, the RNN loop converts with Flex
    `TensorList` ops, which the plain LiteRT runtime (Android without the
    Flex delegate) cannot run. This function does not build on it because
    that API converts inside the calling process, from the live model;
    here the converter runs in a subprocess on the exported SavedModel, so
    that a converter crash (TF 2.17 segfaults on some graphs) is an error
    rather than the end of your process, and your custom layers need not be
    importable in that subprocess. What this function adds (the dense twin
    for comparison, int8 calibration of an unrolled copy, the check in
    LiteRT, the sidecar and the report) would sit around either converter.

    Args:
        model: A built Keras 3 model (with fixed input shapes besides the
            batch, or see `input_shape`).
        path: String path ending in `.tflite`; its folder must exist.
        quantization: `"float32"`, `"dynamic_int8"` (int8 weights, float
            activations) or `"int8"` (full integer; needs
            `representative_data`). Defaults to `"float32"`.
        representative_data: Array `(n, *input_shape)` (a list for several
            inputs) for `"int8"` calibration. Defaults to `None`.
        sample_inputs: Array(s) like `representative_data` to verify the
            export with; `None` uses 8 random normal samples. Defaults to
            `None`.
        tolerance: Float. Largest accepted `max |tflite - keras| / max(1,
            max |keras|)`; `None` uses `DEFAULT_TOLERANCE[quantization]`.
        metadata: JSON-serialisable dict written into the sidecar (labels,
            feature settings, ...). Defaults to `None`.
        input_shape: Shape without the batch (a list of shapes for several
            inputs) that fixes the model's `None` dimensions, e.g. `(300,
            40)` for a recogniser over up to 3 s of 10-ms frames (pad
            shorter inputs). Defaults to `None` (the model's own shapes,
            which must then be fixed).
        streaming: Boolean. Export the model as one step of a stream
            (`streaming.streaming_model`): the `.tflite` takes a chunk of
            `chunk_frames` frames and the state tensors and returns the
            outputs and the new state tensors, so that an app transcribes
            audio as it arrives. Before writing, a stream of `sample_inputs`
            (whole chunks, from zero states) run chunk by chunk in LiteRT is
            checked against the offline Keras model; the sidecar's
            `"streaming"` entry names the state tensors in and out. For
            unidirectional models (bidirectional ones are refused, with the
            reason). Defaults to `False`.
        chunk_frames: Integer >= 1, frames per call with `streaming=True`
            (a multiple of the front end's stride). Defaults to `None`.
        shrink_units: Boolean. Remove the recurrent layers' dead hidden
            units before converting (`shrinking.shrink_units`: units whose
            kernel columns and biases are all zero, as
            `GradualPruning(granularity="units")` leaves them), so that a
            smaller dense layer is exported; the outputs are checked
            against the original model. `report.shrunk` says what was
            removed and why dead units were kept. Defaults to `True`.
        encoding: `"auto"`, `"sparse"`, `"dense"` or `"gathered"`: how
            the weights are stored. `"gathered"` writes the recurrent
            layers as gathers of the inputs each group of outputs reads and
            small dense products (`gathering`; fast where groups read few
            inputs, as `GradualPruning(block_size=(1, n))` leaves them;
            float32 and dynamic_int8, not streaming). `"auto"` times the
            sparse and dense encodings and, where a gathered copy can be
            made, that one too (batch 1, one thread, each on its faster
            interpreter setting), and writes the sparse one unless another
            is at least 5% faster: sparse kernels only pay at high block
            sparsity, and the export is never knowingly slower than dense
            (the report says which was chosen and why). `"sparse"` keeps
            the smaller file whatever its speed. Defaults to `"auto"`.

    Returns:
        An `ExportReport`; `print(report)` shows the table.

    Raises:
        ValueError: for a bad path, suffix or quantization, data of the
            wrong shape, a model the converter cannot convert, or an export
            that does not reproduce Keras; no file is left behind.
        TypeError: for arguments of the wrong type.
        RuntimeError: if Keras runs on another backend than TensorFlow
            (save the model as `.keras` and export it from a process with
            `KERAS_BACKEND=tensorflow`).

    Example:

    ```python
    report = tf_gradual_prune.export_tflite(model, "model.tflite")
    print(report)
    ```
    """
    compat.require_tensorflow_backend("`export_tflite`")
    path, tolerance = _check_arguments(
        path, quantization, encoding, tolerance, metadata, streaming, shrink_units,
        chunk_frames, input_shape)
    original, shrunk = model, {"shrunk": {}, "kept": {}}
    if shrink_units:
        model, shrunk = shrinking.shrink_units(model)
    offline = utterances = None
    if streaming:
        offline, model = original, streaming_module.streaming_model(model, chunk_frames)
        utterances = _utterances(sample_inputs, offline, chunk_frames)
        sample_inputs = None  # the step itself is checked on random chunks and states
    specs = _input_specs(model, input_shape)
    representative, samples = _check_data(quantization, representative_data, sample_inputs,
                                          specs)
    pruned = _pruned_matrices(model, warn=not shrunk["shrunk"])

    # Conversion: the sparse file, its dense twin and, where recurrent
    # layers can be gathered, a gathered copy.
    gathered, gathered_report = _gathered_copy(model, encoding, quantization,
                                               offline is not None)
    data, dense_data = _convert_model(model, specs, quantization, representative)
    candidates = {"sparse": data, "dense": dense_data}
    if gathered is not None:
        try:
            (candidates["gathered"],) = _convert_model(gathered, specs, quantization,
                                                       representative, variants=("sparse",))
        except (ValueError, TypeError, RuntimeError, NotImplementedError) as error:
            if encoding == "gathered":
                raise
            # "auto": the other encodings still stand; the report says why.
            why = f"the gathered copy did not convert: {error}"
            gathered, gathered_report = None, {
                "gathered": {},
                "kept": {**gathered_report["kept"],
                         **{name: why for name in gathered_report["gathered"]}}}
    # Verification in LiteRT against the model as given (a shrunk copy must
    # compute the same), and the choice of encoding.
    reference = model if offline is not None else original
    data, (errors, delegate, speed), chosen, timings = _choose_encoding(
        encoding, candidates, reference, samples, tolerance)
    stored = tflite_tensors.read_tensors(data)
    stream = None
    if offline is not None:
        stream = _verify_stream(data, delegate, offline, utterances, tolerance)

    # Reporting: per-tensor rows, the sidecar, the files.
    tensors, not_sparse, others = _tensor_rows(
        stored, model, pruned, chosen, gathered if chosen == "gathered" else None)
    sidecar_path = path[: -len(".tflite")] + ".json"
    sidecar = _sidecar(path, data, model, quantization, delegate, tensors, shrunk, metadata,
                       stream, chunk_frames, chosen)
    files.write_atomic(path, data)
    files.write_atomic(sidecar_path, json.dumps(sidecar, indent=2))
    return ExportReport(
        path=path,
        sidecar_path=sidecar_path,
        quantization=quantization,
        tensors=tensors,
        size_bytes=len(data),
        dense_size_bytes=len(dense_data),
        sparse_tensors=sum(t.format == "sparse" for t in stored),
        errors=errors,
        tolerance=tolerance,
        max_error=errors[delegate],
        delegate=delegate,
        not_sparse=not_sparse,
        other_constants_bytes=sum(t.bytes for t in others),
        streaming=sidecar.get("streaming"),
        shrunk=shrunk,
        encoding=chosen,
        timings=timings,
        gathered=gathered_report,
    )


def _check_arguments(path, quantization, encoding, tolerance, metadata, streaming,
                     shrink_units, chunk_frames, input_shape):
    """`export_tflite`'s argument checks; returns the path as a string and
    the tolerance in force."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a string. Received: path={path!r}")
    path = os.fspath(path)
    if not path.endswith(".tflite"):
        raise ValueError(f"`path` must end in '.tflite'. Received: path={path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(
            f"The folder of `path` does not exist. Received: path={path!r}"
        )
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {QUANTIZATIONS}. Received: "
            f"quantization={quantization!r}"
        )
    if encoding not in ENCODINGS:
        raise ValueError(
            f"`encoding` must be one of {ENCODINGS}. Received: encoding={encoding!r}"
        )
    if encoding == "gathered" and (streaming or quantization == "int8"):
        raise ValueError(
            "`encoding='gathered'` is for float32 and dynamic_int8 exports that do "
            "not stream. Received: encoding='gathered', "
            f"quantization={quantization!r}, streaming={streaming!r}")
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE[quantization]
    else:
        tolerance = checks.check_float("tolerance", tolerance, 0)
        if tolerance == 0:
            raise ValueError("`tolerance` must be > 0. Received: tolerance=0.0")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"`metadata` must be a dict. Received: metadata={metadata!r}")
    if metadata is not None:
        json.dumps(metadata)  # fails early, with json's message, if not serialisable
    for name, value in (("streaming", streaming), ("shrink_units", shrink_units)):
        checks.check_bool(name, value)
    if streaming:
        if chunk_frames is None:
            raise ValueError("`streaming=True` needs `chunk_frames`. Received: chunk_frames=None")
        if input_shape is not None:
            raise ValueError(
                "`input_shape` is not used with streaming=True (a call takes "
                f"`chunk_frames` frames). Received: input_shape={input_shape!r}"
            )
        if quantization == "int8":
            raise ValueError(
                "`quantization='int8'` is not available with streaming=True: the "
                "carried state would be requantised at every call. Use "
                "'float32' or 'dynamic_int8'. Received: quantization='int8'"
            )
    elif chunk_frames is not None:
        raise ValueError(
            "`chunk_frames` is only used with streaming=True. Received: "
            f"chunk_frames={chunk_frames!r}"
        )
    return path, tolerance


def _check_data(quantization, representative_data, sample_inputs, specs):
    """The calibration data (int8 only) and the verification samples as
    lists of arrays that match `specs`."""
    representative = None
    if quantization == "int8":
        if representative_data is None:
            raise ValueError(
                "`quantization='int8'` needs `representative_data`. Received: "
                "representative_data=None"
            )
        representative = _check_arrays("representative_data", representative_data, specs)
    elif representative_data is not None:
        raise ValueError(
            "`representative_data` is only used with quantization='int8'. "
            f"Received it with quantization={quantization!r}"
        )
    if sample_inputs is None:
        rng = np.random.default_rng(0)
        samples = [rng.normal(size=(8,) + tuple(s.shape[1:])).astype(np.float32) for s in specs]
    else:
        samples = _check_arrays("sample_inputs", sample_inputs, specs)
    return representative, samples


def _pruned_matrices(model, warn):
    """The rows of `model`'s sparsity table with enough zeros to store
    sparse; with `warn`, a warning when there are none."""
    try:
        table = masking.sparsity_table(model, weights="all")
    except ValueError:  # no prunable matrix at all
        table = []
    pruned = [row for row in table if row["sparsity"] >= SPARSE_MIN_ZEROS]
    if not pruned and warn:
        warnings.warn(
            f"Model {model.name!r} has no weight matrix with >= "
            f"{SPARSE_MIN_ZEROS:.0%} zeros: nothing to encode sparsely. "
            "Exporting it dense.",
            stacklevel=3,
        )
    return pruned


def _convert_model(model, specs, quantization, representative, variants=("sparse", "dense")):
    """The model through a SavedModel to `.tflite` bytes, one per variant
    (the converter runs in a subprocess, `_convert_both`)."""
    workdir = tempfile.mkdtemp(prefix="tfgp_export_")
    try:
        saved = os.path.join(workdir, "saved_model")
        exported = model
        if quantization == "int8":
            exported = _unrolled(model)
            np.savez(
                os.path.join(workdir, "representative.npz"),
                **{f"input_{i:03d}": a for i, a in enumerate(representative)},
            )
        tf_logger = logging.getLogger("tensorflow")
        level = tf_logger.level
        tf_logger.setLevel(logging.WARNING)  # "Assets written to <our temp dir>" is noise
        try:
            # A model of several inputs takes them as one list argument.
            signature = specs if len(specs) == 1 else [specs]
            exported.export(saved, input_signature=signature, verbose=False)
        finally:
            tf_logger.setLevel(level)
        return _convert_both(workdir, quantization, variants)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _gathered_copy(model, encoding, quantization, streaming):
    """`(copy or None, report)`: the gathered copy `encoding` asks for
    (`"auto"` or `"gathered"`; not for streaming or full-integer exports)."""
    if encoding not in ("auto", "gathered") or streaming or quantization == "int8":
        return None, {"gathered": {}, "kept": {}}
    copy, report = gathering.gathered_model(model)
    if copy is None and encoding == "gathered":
        why = "; ".join(f"{k}: {v}" for k, v in report["kept"].items()) or "it has none"
        raise ValueError(
            "`encoding='gathered'` needs a recurrent layer that can be gathered, and "
            f"this model has none ({why}). Received: encoding='gathered'")
    return copy, report


def _choose_encoding(encoding, candidates, reference, samples, tolerance):
    """Verifies the encoding asked for; with `"auto"`, every candidate
    (`{"sparse": bytes, "dense": bytes, "gathered": bytes}`, gathered where
    a copy was made), and keeps the fastest correct one, where a challenger
    must be at least `FASTER` times the latency of the sparse file (and
    the gathered one of the better of the other two). Returns `(data,
    (errors, delegate, speed), chosen, timings)`."""
    first = "sparse" if encoding == "auto" else encoding
    result = _verify(candidates[first], reference, samples, tolerance)
    chosen, data, timings = first, candidates[first], {first: result[2]}
    if encoding != "auto":
        return data, result, chosen, timings
    has_sparse = any(t.format == "sparse" for t in tflite_tensors.read_tensors(data))
    for name in ("dense", "gathered"):
        if name not in candidates or (name == "dense" and not has_sparse):
            continue
        try:
            other = _verify(candidates[name], reference, samples, tolerance)
        except ValueError:  # this candidate does not reproduce Keras: not chosen
            continue
        timings[name] = other[2]
        if min(other[2].values()) < FASTER * min(result[2].values()):
            data, result, chosen = candidates[name], other, name
    return data, result, chosen, timings


def _tensor_rows(stored, model, pruned, chosen, gathered=None):
    """The report's rows of the stored tensors that are Keras weights, the
    pruned weights not stored sparse (a warning names them when the sparse
    encoding was chosen), and the other stored constants. For a gathered
    export (`gathered`: the copy that was converted), the rows of the
    gathered matrices come from their gathered form."""
    names = _match_keras_weights(stored, model)
    matched = [(t, name) for t, name in zip(stored, names) if name is not None]
    others = [t for t, name in zip(stored, names) if name is None]
    tensors = [
        {
            "name": t.name,
            "keras_weight": name,
            "shape": list(t.shape),
            "sparsity": t.zeros / t.values.size,
            "format": t.format,
            "block": list(t.block),
            "bytes": t.bytes + t.index_bytes,
        }
        for t, name in matched
    ]
    if gathered is not None:
        rows, taken = _gathered_rows(stored, gathered, model)
        tensors += rows
        others = [t for t in others if not any(t is u for u in taken)]
    sparse_names = {t["keras_weight"] for t in tensors if t["format"] != "dense"}
    not_sparse = [row["name"] for row in pruned if row["name"] not in sparse_names]
    if not_sparse and chosen == "sparse":
        warnings.warn(
            f"{len(not_sparse)} weight(s) with >= {SPARSE_MIN_ZEROS:.0%} zeros are "
            f"not stored sparse: {not_sparse}",
            stacklevel=3,
        )
    return tensors, not_sparse, others


def _gathered_rows(stored, gathered, model):
    """Report rows of the matrices a gathered copy holds in gathered form
    (bytes: the stored indices and blocks), and the stored tensors used."""
    names = {id(item.variable): item.name
             for item in masking.find_prunable_weights(model, weights="all")}
    rows, taken = [], []
    for layer in gathered.layers:
        if not isinstance(layer, gathering.GatheredRecurrent):
            continue
        for direction in layer.directions:
            for variable, (indices, blocks), matrix in direction.matrices():
                name = names.get(id(variable), variable.path)
                parts = [t for t in stored
                         if any(t.shape == a.shape and _holds(t, a) for a in (indices, blocks))]
                taken += parts
                rows.append({
                    "name": name,
                    "keras_weight": name,
                    # [outputs, inputs] and the block in that layout, as
                    # TFLite's FULLY_CONNECTED weights are listed.
                    "shape": list(matrix.T.shape),
                    "sparsity": float(np.mean(matrix == 0)),
                    "format": "gathered",
                    "block": [int(blocks.shape[-1]), 1],
                    "bytes": sum(t.bytes + t.index_bytes for t in parts),
                })
    return rows, taken


def _holds(tensor, array):
    """Whether a stored tensor holds `array` (quantised: within one
    quantisation step)."""
    decoded = tensor.values.astype(np.float32)
    if tensor.scale is None:
        return np.array_equal(array, decoded)
    return np.allclose(array, decoded * tensor.scale, rtol=0, atol=float(np.max(tensor.scale)))


def _sidecar(path, data, model, quantization, delegate, tensors, shrunk, metadata, stream,
             chunk_frames, encoding):
    """The JSON sidecar of the `.tflite` file at `path`: its inputs and
    outputs (with the streaming states), the interpreter settings, the
    metadata."""
    runner = runtime.LiteRTRunner(data, delegate=delegate)
    described = [
        [
            {"name": d["name"], "signature_key": d.get("signature_key"),
             "shape": d["shape"].tolist(), "dtype": np.dtype(d["dtype"]).name}
            for d in details
        ]
        for details in (runner.input_details, runner.output_details)
    ]
    sidecar = {
        "format": "tf_gradual_prune.tflite_sidecar/1",
        "model": os.path.basename(path),
        "quantization": quantization,
        "inputs": described[0],
        "outputs": described[1],
        "interpreter": {"delegate": delegate, "use_xnnpack": delegate == "xnnpack"},
        "encoding": encoding,
        "sparse_tensors": sum(t["format"] == "sparse" for t in tensors),
        "shrunk_units": shrunk["shrunk"],
        "tf_gradual_prune_version": __version__,
        "metadata": metadata or {},
    }
    if stream is not None:
        states = len(described[0]) - 1
        sidecar["streaming"] = {
            "chunk_frames": int(chunk_frames),
            "output_frames": stream["output_frames"],
            "chunk_input": described[0][0]["signature_key"],
            "outputs": [o["signature_key"] for o in described[1][: len(described[1]) - states]],
            "states": [
                {"keras_name": tensor.name, "input": i["signature_key"],
                 "output": o["signature_key"], "shape": i["shape"]}
                for tensor, i, o in zip(model.inputs[1:], described[0][1:],
                                        described[1][len(described[1]) - states:])
            ],
            "how": "Start from zero states; pass each call's state outputs as "
                   "the next call's state inputs.",
            "max_error_vs_offline": stream["error"],
        }
    return sidecar
