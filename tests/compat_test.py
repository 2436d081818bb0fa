import pytest
import tensorflow as tf

from tf_gradual_prune import compat

LINE = ".".join(tf.__version__.split(".")[:2])
OTHER = "2.21.0" if LINE != "2.21" else "2.17.0"


def fake_versions(monkeypatch, **versions):
    """Makes `compat` see these distributions (`tf_keras="2.17.0"`) as
    installed, and no other optional one."""
    versions = {name.replace("_", "-"): version for name, version in versions.items()}
    monkeypatch.setattr(compat, "_installed", versions.get)


def test_require_tfmot_on_this_stack():
    pytest.importorskip("tensorflow_model_optimization")
    tfmot = compat.require_tfmot()
    assert callable(tfmot.sparsity.keras.PolynomialDecay)


def test_a_tf_keras_of_another_minor_version_is_named_with_the_fix(monkeypatch):
    fake_versions(monkeypatch, tensorflow_model_optimization="0.8.1", tf_keras=OTHER)
    with pytest.raises(ImportError, match=f"tf-keras {OTHER} is installed with TensorFlow "
                                          f"{tf.__version__}") as info:
        compat.require_tfmot()
    assert f"pip install 'tf-keras~={LINE}.0'" in str(info.value)


@pytest.mark.parametrize("present", [{}, {"tensorflow_model_optimization": "0.8.1"},
                                     {"tf_keras": f"{LINE}.0"}])
def test_missing_tfmot_or_tf_keras_names_the_extra(monkeypatch, present):
    fake_versions(monkeypatch, **present)
    with pytest.raises(ImportError, match=r"tf-gradual-prune\[tfmot\]' 'tf-keras~="
                                          + LINE.replace(".", r"\.")):
        compat.require_tfmot()


def test_tensorflow_only_parts_name_the_backend(monkeypatch):
    import keras

    from tf_gradual_prune import compat

    if keras.backend.backend() == "tensorflow":
        compat.require_tensorflow_backend("`export_tflite`")  # nothing to say
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(RuntimeError,
                       match=r"`export_tflite` .* on 'jax' .*KERAS_BACKEND=tensorflow"):
        compat.require_tensorflow_backend("`export_tflite`")
