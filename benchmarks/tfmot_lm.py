"""tfmot's own AGP on a tf_keras twin of the Penn Treebank language model.

`lm_bench.py --methods tfmot_agp` runs `run(...)` in a process of its own
(`common.in_subprocess("tfmot_lm", "run", ...)`): tfmot needs tf_keras,
which must be chosen before TensorFlow is imported.

The twin has the architecture of `models.language_model(stateful=True)`
layer for layer: an embedding, two stateful LSTMs and the output layer,
with `prune_low_magnitude` on the LSTMs (tfmot prunes their input and
recurrent kernels) and on the output layer (its kernel), the matrices
`lm_bench` prunes. Training: the same batches in the same order, Zaremba's
SGD (`lm_bench.zaremba_sgd`, built by tf_keras), the same steps and the
same `PolynomialDecay` as the `agp` row (`common.pruning_schedule`), with
tfmot's `UpdatePruningStep` and the states reset at every epoch. The twin
starts from the initial weights of our row with the same seed
(`lm_bench.run_one` writes its Keras 3 model's weights for it), so the two AGP
rows differ only in the pruning code and the framework. The trained,
stripped weights are written to a `.npz` file, which `lm_bench` loads into
that Keras 3 model, so that perplexity, sparsity and export size are
measured by the same code as every other row.
"""

import os
import sys

if not __package__:  # run as a file (python benchmarks/<name>.py): the package from the root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def twin(vocabulary, units, batch_size, steps, schedule, layers=2):
    """The tf_keras twin of `models.language_model(vocabulary, units,
    stateful=True, batch_size=batch_size, steps=steps)`, its LSTMs and output
    layer pruned by tfmot's `prune_low_magnitude` with `schedule`."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    prune = tfmot.sparsity.keras.prune_low_magnitude
    inputs = tf_keras.Input(batch_shape=(batch_size, steps), dtype="int32")
    x = tf_keras.layers.Embedding(vocabulary, units)(inputs)
    for _ in range(layers):
        x = prune(tf_keras.layers.LSTM(units, return_sequences=True, stateful=True),
                  pruning_schedule=schedule)(x)
    outputs = prune(tf_keras.layers.Dense(vocabulary), pruning_schedule=schedule)(x)
    return tf_keras.Model(inputs, outputs)


def run(data_dir, train_words, units, epochs, seed, target, frequency, batch_size, steps,
        weights_path):
    """Trains the AGP row through tfmot from the initial weights at
    `weights_path` (`.npz`, the Keras 3 model's `get_weights()`) and writes
    the stripped weights there, in the same order
    (`.npz`). Returns the steps trained and the training seconds."""
    import time

    import numpy as np
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from benchmarks import common, lm_bench
    from benchmarks.tfmot_speech import weighted_layers
    from tf_gradual_prune import lm_data

    corpus = lm_data.ptb(data_dir)
    train = corpus.train if train_words is None else corpus.train[:train_words]
    x, y = lm_data.lm_batches(train, batch_size, steps)
    steps_per_epoch = len(x) // batch_size
    vocabulary = len(corpus.vocabulary)
    tf_keras.utils.set_random_seed(seed)
    schedule = common.pruning_schedule("agp", epochs, steps_per_epoch, target, frequency)
    pruned = twin(vocabulary, units, batch_size, steps, schedule)
    # The Keras 3 model's initial weights, which lm_bench.run_one wrote here.
    with np.load(weights_path) as saved:
        initial = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    for layer in weighted_layers(pruned):
        count = len(layer.get_weights())
        layer.set_weights(initial[:count])
        initial = initial[count:]
    assert not initial, "the twin holds fewer weights than the Keras 3 model"

    class ResetStates(tf_keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            for layer in weighted_layers(self.model):
                if getattr(layer, "stateful", False):
                    layer.reset_states()

    pruned.compile(optimizer=lm_bench.zaremba_sgd(epochs, steps_per_epoch, steps, tf_keras),
                   loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    pruned.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=2,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), ResetStates()])
    seconds = time.perf_counter() - start
    # strip_pruning applies the masks to the wrapped layers' weights.
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    weights = [w for layer in weighted_layers(stripped) for w in layer.get_weights()]
    np.savez(weights_path, *weights)
    return {"steps": epochs * steps_per_epoch, "train_seconds": seconds}
