"""tfmot's own AGP on a tf_keras twin of the speech model (the anchor row).

`compare.py` runs `run(...)` in a process of its own
(`common.in_subprocess("tfmot_speech", "run", ...)`): tfmot needs tf_keras,
which must be chosen before TensorFlow is imported.

The twin has the architecture of `models.speech_model(mask_padding=False)`
layer for layer (the benchmarks' model).
tfmot cannot wrap `Bidirectional`, so the twin's bidirectional layers are a
`Bidirectional` subclass that is a `tfmot.sparsity.keras.PrunableLayer`
naming the same weights our callback prunes: the input and recurrent
kernels of both directions. Training: the same data, Adam(1e-3), steps and
`PolynomialDecay` as `speech_bench.run_one(method="agp")`, with
`prune_low_magnitude` and `UpdatePruningStep`. The twin starts from the
initial weights of our row with the same seed (`speech_bench.seeded_start`
builds the Keras 3 model; its weights are copied in before training), so
the two AGP rows differ only in the pruning code and the framework. The
trained weights are copied back into that Keras 3 model so that the CER and
the sparsity are measured by the same code as every other row.
"""

import os
import sys

if not __package__:  # run as a file (python benchmarks/<name>.py): the package from the root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def twin(num_features, classes, units, schedule, layers=2, conv_filters=128, conv_kernel=7,
         conv_stride=3):
    """The tf_keras twin of `speech_model(rnn="gru", mask_padding=False)`, its GRU layers pruned by
    tfmot's `prune_low_magnitude` with `schedule`."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    class PrunableBidirectional(tf_keras.layers.Bidirectional,
                                tfmot.sparsity.keras.PrunableLayer):
        def get_prunable_weights(self):
            return [w for direction in (self.forward_layer, self.backward_layer)
                    for w in (direction.cell.kernel, direction.cell.recurrent_kernel)]

    class TwinCTC(tf_keras.Model):
        # Logs the loss as `CTCModel` does: the mean over the epoch's batches.
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.loss_tracker = tf_keras.metrics.Mean(name="loss")

        @property
        def metrics(self):
            return [self.loss_tracker]

        def train_step(self, data):
            features, labels = data
            with tf.GradientTape() as tape:
                logits = self(features, training=True)
                loss = ctc_loss(features, labels, logits, conv_stride)
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
            self.loss_tracker.update_state(loss)
            return {"loss": self.loss_tracker.result()}

    inputs = tf_keras.Input((None, num_features))
    x = tf_keras.layers.Conv1D(conv_filters, conv_kernel, strides=conv_stride,
                               padding="same")(inputs)
    x = tf_keras.layers.BatchNormalization()(x)
    x = tf_keras.layers.ReLU()(x)
    for _ in range(layers):
        bidirectional = PrunableBidirectional(tf_keras.layers.GRU(units, return_sequences=True))
        x = tfmot.sparsity.keras.prune_low_magnitude(bidirectional, pruning_schedule=schedule)(x)
    outputs = tf_keras.layers.Dense(classes)(x)
    return TwinCTC(inputs, outputs)


def weighted_layers(model):
    """The layers of `model` (ours or the twin) that hold weights, in order;
    for a layer wrapped by `prune_low_magnitude`, the wrapped layer, whose
    weights are those of our layer."""
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    return [layer.layer if isinstance(layer, pruning_wrapper.PruneLowMagnitude) else layer
            for layer in model.layers if layer.weights]


def ctc_loss(features, labels, logits, stride):
    """The loss of `models.CTCModel`, written against plain TensorFlow."""
    import tensorflow as tf

    frames = tf.reduce_sum(
        tf.cast(tf.reduce_any(tf.not_equal(features, 0.0), axis=-1), tf.int32), axis=-1)
    logit_lengths = tf.minimum((frames + stride - 1) // stride, tf.shape(logits)[1])
    label_lengths = tf.reduce_sum(tf.cast(labels >= 0, tf.int32), axis=-1)
    loss = tf.nn.ctc_loss(labels=tf.where(labels >= 0, labels, 0), logits=logits,
                          label_length=label_lengths, logit_length=logit_lengths,
                          logits_time_major=False, blank_index=-1)
    return tf.reduce_mean(loss)


def run(data_dir, train_size, test_size, max_digits, units, epochs, seed, target, frequency):
    """One AGP row through tfmot; the same keys as `speech_bench.run_one`."""
    import time

    import tensorflow_model_optimization as tfmot
    import tf_keras

    import tf_gradual_prune as tgp
    from benchmarks import common, speech_bench
    from tf_gradual_prune import models

    task = speech_bench.SpeechTask(data_dir, train_size, test_size, max_digits, 32)
    train, steps, ours = speech_bench.seeded_start(task, units, seed)
    total = epochs * steps
    schedule = common.pruning_schedule("agp", epochs, steps, target, frequency)
    num_features, classes = task.x[0].shape[1], len(task.alphabet) + 1
    pruned = twin(num_features, classes, units, schedule)
    for source, destination in zip(weighted_layers(ours), weighted_layers(pruned), strict=True):
        destination.set_weights(source.get_weights())
    pruned.compile(optimizer=tf_keras.optimizers.Adam(1e-3))
    start = time.perf_counter()
    history = pruned.fit(train.repeat(), epochs=epochs, steps_per_epoch=steps, verbose=0,
                         callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    seconds = time.perf_counter() - start
    # strip_pruning applies the masks to the wrapped layers' weights.
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    for source, destination in zip(weighted_layers(stripped), weighted_layers(ours),
                                   strict=True):
        destination.set_weights(source.get_weights())
    rates = models.error_rates(ours, task.test, task.alphabet)
    table = tgp.sparsity_table(ours, weights="recurrent")
    return {
        "units": units, "seed": seed, "method": "tfmot_agp", "target": target,
        "cer": rates["cer"], "wer": rates["wer"], "sparsity": table.sparsity,
        "nonzeros": table.size - table.zeros, "steps": total, "train_seconds": seconds,
        "loss": float(history.history["loss"][-1]),
    }
