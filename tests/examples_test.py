"""Every ```python example in a public docstring runs.

The examples use the names a Keras user has at hand (`model`, `x`, `y`,
...); `context` gives them small real values: a GRU tagger over 12 frames of
8 features with 3 classes, its data, its `.tflite` files. Each example runs
in a fresh context, in an empty working folder, with the public names of its
own module in scope as well.
"""

import ast
import os
import re

import numpy as np
import pytest
from conftest import REPO

PACKAGE = os.path.join(REPO, "tf_gradual_prune")
EXTRAS = {"tuning": "keras_tuner", "audio": "tensorflow_io"}
#: Examples that train many models (a keras-tuner search with its re-evaluation).
SLOW = {"tuning.PrunedHyperModel"}
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def docstrings(tree, prefix=""):
    """`(qualified name, docstring)` of the public classes and functions in
    an AST body, methods included."""
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and not node.name.startswith("_"):
            name = prefix + node.name
            doc = ast.get_docstring(node)
            if doc:
                yield name, doc
            if isinstance(node, ast.ClassDef):
                yield from docstrings(node, name + ".")


def examples():
    found = []
    for file in sorted(os.listdir(PACKAGE)):
        if not file.endswith(".py") or file.startswith("_"):
            continue
        module = file[:-3]
        with open(os.path.join(PACKAGE, file), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for name, doc in docstrings(tree):
            for i, code in enumerate(BLOCK.findall(doc)):
                ident = f"{module}.{name}"
                marks = [pytest.mark.slow] if ident in SLOW else []
                found.append(pytest.param(module, code, id=f"{ident}[{i}]", marks=marks))
    return found


def context(module):
    """The names the examples of `module` may use."""
    import keras
    import tensorflow as tf

    import tf_gradual_prune
    from tf_gradual_prune import compat

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12, 8)).astype("float32")
    y = rng.integers(0, 3, (64, 12))

    def build_model(hp=None):
        model = keras.Sequential([keras.Input((12, 8)),
                                  keras.layers.GRU(8, return_sequences=True),
                                  keras.layers.Dense(3)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    model = build_model()
    names = {
        "keras": keras, "np": np, "tf": tf, "tf_gradual_prune": tf_gradual_prune,
        "build_model": build_model, "model": model, "x": x, "y": y,
        "x_val": x[:16], "y_val": y[:16], "x_test": x[:8], "frames": x[0, :12],
        "tfmot": compat.require_tfmot(),
    }
    if module == "tuning":
        import keras_tuner

        names["keras_tuner"] = keras_tuner
    if module == "runtime":
        tf_gradual_prune.export_tflite(model, "model.tflite", sample_inputs=x[:2])
        tf_gradual_prune.export_tflite(model, "stream.tflite", streaming=True, chunk_frames=6)
        names["chunks"] = np.split(x[0], 2)
    return names


@pytest.mark.parametrize("module, code", examples())
def test_docstring_example_runs(module, code, tmp_path, monkeypatch):
    if module in EXTRAS:
        pytest.importorskip(EXTRAS[module])
    import importlib

    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module(f"tf_gradual_prune.{module}")
    names = {k: v for k, v in vars(mod).items() if not k.startswith("_")}
    names.update(context(module))
    exec(compile(code, f"<example in tf_gradual_prune.{module}>", "exec"), names)


def test_the_examples_are_found():
    ids = {p.id.split("[")[0] for p in examples()}
    # One per kind: the callback, the export, a model, the tuner.
    assert {"callbacks.GradualPruning", "export.export_tflite", "models.CTCModel",
            "tuning.PrunedHyperModel"} <= ids
