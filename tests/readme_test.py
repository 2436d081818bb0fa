"""The README documents every public class and function."""

import importlib
import inspect
import os

import pytest

from conftest import REPO

MODULES = ["schedules", "callbacks", "masking", "export", "runtime", "tflite_tensors",
           "datasets", "audio", "models", "files", "tuning", "compat", "streaming",
           "shrinking"]


def public_names(module):
    return sorted(
        name for name, value in vars(module).items()
        if not name.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module.__name__
    )


@pytest.mark.parametrize("name", MODULES)
def test_every_public_name_is_in_the_readme(name):
    if name == "tuning":
        pytest.importorskip("keras_tuner")
    if name == "audio":
        pytest.importorskip("tensorflow_io")
    module = importlib.import_module(f"tf_gradual_prune.{name}")
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    missing = [n for n in public_names(module) if f"`{n}" not in readme]
    assert not missing, f"README does not mention {name}.{missing}"
