"""Model builders: a Deep-Speech-2-style CTC recogniser, and its metrics.

`speech_model` builds the model the paper pruned, scaled down: a
convolutional front end (Conv1D, batch normalisation, ReLU), a stack of
bidirectional GRU or LSTM layers, and a dense output over the vocabulary
plus the CTC blank (the last class). `CTCModel` trains it with
`tf.nn.ctc_loss`; `greedy_decode`, `edit_distance` and `error_rate` turn its
outputs into character or word error rates.
"""

import keras
import numpy as np
import tensorflow as tf


def speech_model(num_features, vocabulary_size, rnn="gru", units=128, layers=2,
                 conv_filters=128, conv_kernel=7, conv_stride=3, name="speech"):
    """A DS2-style recogniser returning per-frame logits (blank is last).

    Args:
        num_features: Integer, features per frame (e.g. mel bins).
        vocabulary_size: Integer, labels without the blank.
        rnn: `"gru"` or `"lstm"`.
        units: Integer, units per direction.
        layers: Integer >= 1, bidirectional layers.
        conv_filters, conv_kernel, conv_stride: The front end. A stride of
            3 with batch normalisation leaves CTC's all-blank plateau
            quickly (measured: stride 2 without it stalled).

    Returns:
        A `CTCModel` (compile it with an optimizer only).
    """
    if rnn not in ("gru", "lstm"):
        raise ValueError(f"`rnn` must be 'gru' or 'lstm'. Received: rnn={rnn!r}")
    for arg, value in (("num_features", num_features), ("vocabulary_size", vocabulary_size),
                       ("units", units), ("layers", layers)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{arg}` must be an integer >= 1. Received: {arg}={value!r}")
    layer = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[rnn]
    inputs = keras.Input((None, num_features), name="features")
    x = keras.layers.Conv1D(conv_filters, conv_kernel, strides=conv_stride, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    for _ in range(layers):
        x = keras.layers.Bidirectional(layer(units, return_sequences=True))(x)
    outputs = keras.layers.Dense(vocabulary_size + 1, name="logits")(x)
    model = CTCModel(inputs, outputs, name=name)
    model.conv_stride = conv_stride
    return model


class CTCModel(keras.Model):
    """A functional model trained with CTC loss on padded label batches.

    Labels are padded with -1; feature frames with zeros (a frame of all
    zeros counts as padding when computing the input lengths).
    """

    conv_stride = 1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        # The loss is computed in train_step, not by `compile`.
        return [self.loss_tracker]

    def _lengths(self, features, logits):
        frames = tf.reduce_sum(
            tf.cast(tf.reduce_any(tf.not_equal(features, 0.0), axis=-1), tf.int32), axis=-1
        )
        stride = self.conv_stride
        return tf.minimum((frames + stride - 1) // stride, tf.shape(logits)[1])

    def _ctc(self, features, labels, logits):
        label_lengths = tf.reduce_sum(tf.cast(labels >= 0, tf.int32), axis=-1)
        dense = tf.where(labels >= 0, labels, 0)
        loss = tf.nn.ctc_loss(
            labels=dense, logits=tf.cast(logits, tf.float32), label_length=label_lengths,
            logit_length=self._lengths(features, logits), logits_time_major=False,
            blank_index=-1,
        )
        return tf.reduce_mean(loss)

    def train_step(self, data):
        features, labels = data
        with tf.GradientTape() as tape:
            logits = self(features, training=True)
            loss = self._ctc(features, labels, logits)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        features, labels = data
        logits = self(features, training=False)
        self.loss_tracker.update_state(self._ctc(features, labels, logits))
        return {"loss": self.loss_tracker.result()}

    def decode(self, features):
        """Greedy CTC decoding of a feature batch: a list of label lists."""
        logits = self(features, training=False)
        return greedy_decode(logits.numpy(), self._lengths(features, logits).numpy())


def greedy_decode(logits, lengths=None):
    """Best-path CTC decoding: argmax per frame, merge repeats, drop blanks.

    Args:
        logits: Array `(batch, frames, classes)`; the blank is the last class.
        lengths: Optional valid frame counts per example.

    Returns:
        A list of label lists.
    """
    logits = np.asarray(logits)
    blank = logits.shape[-1] - 1
    best = logits.argmax(axis=-1)
    out = []
    for i, path in enumerate(best):
        if lengths is not None:
            path = path[: int(lengths[i])]
        labels, previous = [], None
        for label in path:
            if label != previous and label != blank:
                labels.append(int(label))
            previous = label
        out.append(labels)
    return out


def edit_distance(a, b):
    """Levenshtein distance between two sequences."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def error_rate(hypotheses, references):
    """Total edit distance over total reference length (CER on characters,
    WER on word lists)."""
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses for {len(references)} references."
        )
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("The references are empty.")
    return sum(edit_distance(h, r) for h, r in zip(hypotheses, references)) / total
