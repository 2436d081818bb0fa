"""Model builders: a Deep-Speech-2-style CTC recogniser, and its metrics.

`speech_model` builds the model the paper pruned, scaled down: a
convolutional front end (Conv1D, batch normalisation, ReLU), a stack of
bidirectional (or, to stream, forward) GRU or LSTM layers, and a dense
output over the vocabulary plus the CTC blank (the last class). `CTCModel` trains it with
`tf.nn.ctc_loss`; `greedy_decode`, `edit_distance` and `error_rate` turn its
outputs into character or word error rates; `Alphabet` maps transcripts to
label sequences and back; `ErrorRates` reports CER and WER during `fit`.

The Keras objects here (`CTCModel`, `PaddingMask`, `TiedEmbedding`,
`Perplexity`) are registered as serialisable, so `keras.saving.load_model`
restores a saved model of this package without `custom_objects` once
`tf_gradual_prune` is imported.
"""

import keras
import numpy as np
import tensorflow as tf

from tf_gradual_prune import checks, compat


def speech_model(num_features, vocabulary_size, rnn="gru", units=128, layers=2,
                 conv_filters=128, conv_kernel=7, conv_stride=3, regularizer=None,
                 mask_padding=True, bidirectional=True, name="speech"):
    """A DS2-style recogniser returning per-frame logits (blank is last).

    Args:
        num_features: Integer, features per frame (e.g. mel bins).
        vocabulary_size: Integer, labels without the blank.
        rnn: `"gru"` or `"lstm"`.
        units: Integer, units per direction.
        layers: Integer >= 1, recurrent layers.
        conv_filters: Integer, filters of the Conv1D front end.
        conv_kernel: Integer, the front end's kernel width in frames.
        conv_stride: Integer, the front end's stride. A stride of 3 with
            batch normalisation leaves CTC's all-blank plateau quickly
            (measured: stride 2 without it stalled). The stride is also the
            model's `conv_stride`, saved with it.
        regularizer: Optional Keras regularizer (e.g.
            `keras.regularizers.L1(1e-5)`) on the recurrent layers' input and
            recurrent kernels; `CTCModel` adds it to the CTC loss.
        mask_padding: Boolean. Make the answer independent of the padding
            (the batch an utterance is evaluated in): the front end pads
            each sequence by a fixed `(conv_kernel - 1) // 2` frames on the
            left (`"same"` padding would shift the strided frames with the
            padded length), and the recurrent layers skip the frames that
            `PaddingMask` marks as padding, so the backward direction starts
            at the utterance's last frame, not in the zeros after it.
            `False` builds the first version of this model (`"same"`
            padding, no mask), on which the benchmarks' saved figures were
            measured. Defaults to `True`.
        bidirectional: Boolean. `False` builds a model that can stream
            (`streaming_model`, `export_tflite(..., streaming=True)`):
            forward-only recurrent layers, and a front end that looks only
            backwards (padded by `conv_kernel - 1` frames on the left, none
            on the right), so that each output frame depends on the audio
            up to it. Defaults to `True`.

    Every layer has a fixed name (`"conv"`, `"conv_norm"`, `"gru_0"`,
    `"bidirectional_0"`, ..., `"logits"`), so weight paths such as
    `bidirectional_0/forward_gru_0/gru_cell/kernel` are the same in every
    process, however many models it built before.

    Returns:
        A `CTCModel` (compile it with an optimizer only).

    Raises:
        ValueError: for an unknown `rnn` or sizes that are not integers >= 1.
    """
    if rnn not in ("gru", "lstm"):
        raise ValueError(f"`rnn` must be 'gru' or 'lstm'. Received: rnn={rnn!r}")
    for arg, value in (("num_features", num_features), ("vocabulary_size", vocabulary_size),
                       ("units", units), ("layers", layers), ("conv_filters", conv_filters),
                       ("conv_kernel", conv_kernel), ("conv_stride", conv_stride)):
        checks.check_int(arg, value, 1)
    for arg, value in (("mask_padding", mask_padding), ("bidirectional", bidirectional)):
        checks.check_bool(arg, value)
    layer = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[rnn]
    inputs = keras.Input((None, num_features), name="features")
    if mask_padding:
        # A fixed left pad: output frame j always reads input frames
        # j * stride - left ... j * stride - left + kernel - 1, and there are
        # ceil(frames / stride) of them, as with "same" padding.
        left = (conv_kernel - 1) // 2 if bidirectional else conv_kernel - 1
        x = keras.layers.ZeroPadding1D((left, conv_kernel - 1 - left), name="conv_padding")(inputs)
        x = keras.layers.Conv1D(conv_filters, conv_kernel, strides=conv_stride, name="conv")(x)
    else:
        x = keras.layers.Conv1D(conv_filters, conv_kernel, strides=conv_stride,
                                padding="same" if bidirectional else "causal", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="conv_norm")(x)
    x = keras.layers.ReLU(name="conv_relu")(x)
    mask = PaddingMask(conv_stride, name="padding_mask")(inputs, x) if mask_padding else None
    # Every layer is named, so that weight paths (sparsity tables, saved
    # pruning states) do not depend on how many models the process built.
    for i in range(layers):
        rnn_layer = layer(units, return_sequences=True, kernel_regularizer=regularizer,
                          recurrent_regularizer=regularizer, name=f"{rnn}_{i}")
        if bidirectional:
            rnn_layer = keras.layers.Bidirectional(rnn_layer, name=f"bidirectional_{i}")
        x = rnn_layer(x, mask=mask)
    outputs = keras.layers.Dense(vocabulary_size + 1, name="logits")(x)
    return CTCModel(inputs, outputs, name=name, conv_stride=conv_stride)


def valid_frames(features, stride=1):
    """How many frames of each sequence in a zero-padded batch hold data.

    A frame whose features are all zero is padding. With `stride`, the
    count after a front end of that stride: `ceil(frames / stride)`.

    Args:
        features: Tensor `(batch, frames, features)`.
        stride: Integer >= 1.

    Returns:
        An int32 tensor `(batch,)`.
    """
    ops = keras.ops
    frames = ops.sum(ops.cast(ops.any(ops.not_equal(features, 0), axis=-1), "int32"), axis=-1)
    return (frames + stride - 1) // stride


@keras.saving.register_keras_serializable(package="tf_gradual_prune")
class PaddingMask(keras.layers.Layer):
    """The mask of a front end's output frames that hold speech.

    Called on the zero-padded input features and the front end's output
    (strided by `stride`), it returns a boolean `(batch, output_frames)`
    mask, true for the first `valid_frames(features, stride)` frames; pass
    it as `mask=` to the recurrent layers, so that they skip the padding.

    Args:
        stride: Integer >= 1. Input frames per output frame.
        **kwargs: Those of `keras.layers.Layer` (`name`).

    Raises:
        ValueError: for a `stride` that is not an integer >= 1.

    Example:

    ```python
    inputs = keras.Input((None, 40))
    x = keras.layers.Conv1D(64, 3, strides=3)(keras.layers.ZeroPadding1D((1, 1))(inputs))
    mask = PaddingMask(3)(inputs, x)
    x = keras.layers.Bidirectional(keras.layers.GRU(64, return_sequences=True))(x, mask=mask)
    ```
    """

    def __init__(self, stride=1, **kwargs):
        super().__init__(**kwargs)
        self.stride = checks.check_int("stride", stride, 1)

    def call(self, features, frames):
        lengths = valid_frames(features, self.stride)
        positions = keras.ops.arange(keras.ops.shape(frames)[1])
        return keras.ops.expand_dims(positions, 0) < keras.ops.expand_dims(lengths, 1)

    def compute_output_spec(self, features, frames):
        return keras.KerasTensor(tuple(frames.shape[:2]), dtype="bool")

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


@keras.saving.register_keras_serializable(package="tf_gradual_prune")
class CTCModel(keras.Model):
    """A functional model trained with CTC loss on padded label batches.

    Labels are padded with -1; feature frames with zeros (a frame of all
    zeros counts as padding when computing the input lengths).

    Args:
        *args: Those of a functional `keras.Model` (`inputs`, `outputs`).
        **kwargs: Those of a functional `keras.Model` (`inputs`,
            `outputs`, `name`).
        conv_stride: Integer >= 1. How many input frames make one output
            frame (the stride of the front end): the valid frames of the
            logits, for the loss and for `decode`, are the input's divided
            by it, rounded up. Part of the config, so a reloaded model
            decodes as the saved one did. Defaults to `1`.

    Raises:
        ValueError: for a `conv_stride` that is not an integer >= 1.

    Example:

    ```python
    inputs = keras.Input((None, 40))
    x = keras.layers.Conv1D(64, 7, strides=3, padding="same")(inputs)
    outputs = keras.layers.Dense(11)(keras.layers.GRU(64, return_sequences=True)(x))
    model = CTCModel(inputs, outputs, conv_stride=3)
    model.compile(optimizer="adam")
    ```
    """

    def __init__(self, *args, conv_stride=1, **kwargs):
        checks.check_int("conv_stride", conv_stride, 1)
        compat.require_tensorflow_backend("`CTCModel` (its CTC loss and training step)")
        super().__init__(*args, **kwargs)
        self.conv_stride = int(conv_stride)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def get_config(self):
        # The functional config (layers and their connections) plus ours;
        # `keras.Model.from_config` passes the extra key to `__init__`.
        return {**super().get_config(), "conv_stride": self.conv_stride}

    @property
    def metrics(self):
        # The loss is computed in train_step, not by `compile`.
        return [self.loss_tracker]

    def _lengths(self, features, logits):
        return tf.minimum(valid_frames(features, self.conv_stride), tf.shape(logits)[1])

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
            total = loss + sum(self.losses) if self.losses else loss
        grads = tape.gradient(total, self.trainable_variables)
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


class Alphabet:
    """The characters a recogniser outputs, and the text <-> label mapping.

    Label `i` is `characters[i]`; the CTC blank comes after the last one
    (so a model needs `len(alphabet) + 1` outputs, which `speech_model`
    adds).

    Args:
        characters: A string of distinct characters, e.g. `"0123456789 "`.

    Example:

    ```python
    alphabet = Alphabet.from_transcripts(["3 9 1", "7"])  # " 13579" sorted
    alphabet.encode("3 1")  # [2, 0, 1]
    ```
    """

    def __init__(self, characters):
        if not isinstance(characters, str) or not characters:
            raise ValueError(
                f"`characters` must be a non-empty string. Received: characters={characters!r}"
            )
        repeated = sorted({c for c in characters if characters.count(c) > 1})
        if repeated:
            raise ValueError(
                f"`characters` must be distinct; {repeated} repeat. "
                f"Received: characters={characters!r}"
            )
        self.characters = characters
        self._index = {c: i for i, c in enumerate(characters)}

    @classmethod
    def from_transcripts(cls, transcripts):
        """The sorted set of characters used in `transcripts`."""
        return cls("".join(sorted(set("".join(transcripts)))))

    def __len__(self):
        return len(self.characters)

    def __repr__(self):
        return f"Alphabet({self.characters!r})"

    def get_config(self):
        return {"characters": self.characters}

    def encode(self, text):
        """The label list of `text`.

        Raises:
            ValueError: naming the character and the text, for a character
                outside the alphabet.
        """
        try:
            return [self._index[c] for c in text]
        except KeyError as error:
            raise ValueError(
                f"The character {error.args[0]!r} in the transcript {text!r} is not in "
                f"the alphabet {self.characters!r}."
            ) from None

    def decode(self, labels):
        """The text of a label list (labels outside the alphabet are an error)."""
        labels = [int(i) for i in labels]
        bad = [i for i in labels if not 0 <= i < len(self.characters)]
        if bad:
            raise ValueError(
                f"Labels {bad} are outside the alphabet (0..{len(self.characters) - 1})."
            )
        return "".join(self.characters[i] for i in labels)


def transcribe(model, data, alphabet):
    """Greedy transcripts of `data` and, if it has labels, the references.

    Args:
        model: A `CTCModel`.
        data: A `tf.data.Dataset` of `(features, labels)` batches (labels
            padded with -1), or a features batch (array or tensor).
        alphabet: The `Alphabet` the labels use.

    Returns:
        `(hypotheses, references)`: lists of strings (`references` is
        `None` for features alone).
    """
    if isinstance(data, tf.data.Dataset):
        hypotheses, references = [], []
        for features, labels in data:
            hypotheses += [alphabet.decode(h) for h in model.decode(features)]
            references += [alphabet.decode([v for v in row if v >= 0])
                           for row in np.asarray(labels)]
        return hypotheses, references
    return [alphabet.decode(h) for h in model.decode(data)], None


def error_rates(model, dataset, alphabet):
    """`{"cer": ..., "wer": ...}` of greedy decoding over a labelled dataset.

    Words are the space-separated parts of the transcripts.
    """
    hypotheses, references = transcribe(model, dataset, alphabet)
    return {
        "cer": error_rate(hypotheses, references),
        "wer": error_rate([h.split() for h in hypotheses], [r.split() for r in references]),
    }


class ErrorRates(keras.callbacks.Callback):
    """Adds character and word error rates to the logs during `fit`.

    At the end of every `frequency`-th epoch (and the last) it decodes
    `dataset` greedily and writes `<prefix>cer` and `<prefix>wer` into the
    epoch's logs, so they appear in the progress bar, in `History` and in
    callbacks listed after this one (e.g. `EarlyStopping(monitor="val_cer")`).

    Args:
        dataset: A `tf.data.Dataset` of `(features, labels)` batches.
        alphabet: The labels' `Alphabet`.
        prefix: String. Defaults to `"val_"`.
        frequency: Integer >= 1, in epochs. Defaults to `1`.
    """

    def __init__(self, dataset, alphabet, prefix="val_", frequency=1):
        super().__init__()
        if not isinstance(dataset, tf.data.Dataset):
            raise ValueError(
                f"`dataset` must be a tf.data.Dataset. Received: dataset={type(dataset).__name__}"
            )
        checks.check_int("frequency", frequency, 1)
        self.dataset, self.alphabet = dataset, alphabet
        self.prefix, self.frequency = prefix, frequency

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == self.params.get("epochs") if self.params else False
        if logs is None or not ((epoch + 1) % self.frequency == 0 or last):
            return
        for name, value in error_rates(self.model, self.dataset, self.alphabet).items():
            logs[self.prefix + name] = value


# --- Word-level language model ---------------------------------------------


@keras.saving.register_keras_serializable(package="tf_gradual_prune")
class Perplexity(keras.metrics.Metric):
    """Perplexity: exp of the mean cross-entropy per predicted token.

    Args:
        from_logits: Boolean. Whether predictions are logits. Defaults to
            `True`.
        name: String. Defaults to `"perplexity"`.

    Example:

    ```python
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=[Perplexity()])
    ```
    """

    def __init__(self, from_logits=True, name="perplexity", **kwargs):
        super().__init__(name=name, **kwargs)
        self.from_logits = bool(from_logits)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        losses = keras.losses.sparse_categorical_crossentropy(
            y_true, y_pred, from_logits=self.from_logits)
        if sample_weight is not None:
            weights = keras.ops.cast(sample_weight, losses.dtype) * keras.ops.ones_like(losses)
            losses = losses * weights
            count = keras.ops.sum(weights)
        else:
            count = keras.ops.cast(keras.ops.size(losses), "float32")
        self.total.assign_add(keras.ops.cast(keras.ops.sum(losses), "float32"))
        self.count.assign_add(keras.ops.cast(count, "float32"))

    def result(self):
        return keras.ops.exp(self.total / keras.ops.maximum(self.count, 1.0))

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="tf_gradual_prune")
class TiedEmbedding(keras.layers.Layer):
    """An embedding that is also the output layer (weight tying).

    Called on word ids it embeds them, `E[ids]`; called with `logits=True`
    on vectors `x` (of `output_dim`) it gives the logits over the
    vocabulary, `x @ E^T + b` (Press & Wolf 2017; Inan et al. 2017). Both
    uses read the one matrix `E`, which is saved once and still shared after
    `keras.saving.load_model`. Pruning selects `E` as an `"embedding"`
    weight.

    Args:
        input_dim: Integer >= 1. Vocabulary size.
        output_dim: Integer >= 1. Embedding size.
        embeddings_initializer: Initializer of `E`. Defaults to
            `"uniform"` (as `keras.layers.Embedding`).
        **kwargs: Those of `keras.layers.Layer` (`name`, `dtype`).

    Raises:
        ValueError: for sizes that are not integers >= 1.

    Example:

    ```python
    tied = TiedEmbedding(10000, 200)
    words = keras.Input((35,), dtype="int32")
    x = keras.layers.LSTM(200, return_sequences=True)(tied(words))
    model = keras.Model(words, tied(x, logits=True))
    ```
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            checks.check_int(arg, value, 1)
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            shape=(self.input_dim, self.output_dim), initializer=self.embeddings_initializer,
            name="embeddings",
        )
        self.bias = self.add_weight(shape=(self.input_dim,), initializer="zeros", name="bias")

    def call(self, inputs, logits=False):
        if logits:
            return keras.ops.matmul(inputs, keras.ops.transpose(self.embeddings)) + self.bias
        if inputs.dtype not in ("int32", "int64"):
            inputs = keras.ops.cast(inputs, "int32")
        return keras.ops.take(self.embeddings, inputs, axis=0)

    def compute_output_spec(self, inputs, logits=False):
        size = self.input_dim if logits else self.output_dim
        shape = tuple(inputs.shape[:-1] if logits else inputs.shape) + (size,)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        return {
            **super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
        }


def language_model(vocabulary_size, units=200, layers=2, dropout=0.0, tie_weights=False,
                   batch_size=None, steps=None, stateful=False, name="language_model"):
    """A word-level LSTM language model (Zaremba et al. 2014's shape).

    Embedding (of `units` dimensions) -> `layers` LSTM layers of `units`
    -> dense softmax over the vocabulary (logits), with dropout before,
    between and after the LSTMs. The "small" configuration is
    `units=200, layers=2, dropout=0`, the "medium" one `650, 2, 0.5`.

    Args:
        vocabulary_size: Integer >= 2.
        units: Integer >= 1. LSTM units (and the embedding size).
        layers: Integer >= 1.
        dropout: Float in [0, 1).
        tie_weights: Boolean. Share the embedding matrix with the output
            layer: one `TiedEmbedding` layer embeds and gives the logits.
        batch_size: Integer or `None`. A stateful model needs it (its
            state is kept per batch row).
        steps: Integer or `None`, the words per sequence. A stateful model
            needs it.
        stateful: Boolean. Carry the LSTM state from one batch to the next,
            as in the standard setup (see `lm_data.lm_batches` and
            `ResetStates`).

    Returns:
        A `keras.Model` from word ids `(batch, steps)` to logits
        `(batch, steps, vocabulary_size)`.
    """
    for arg, value, low in (("vocabulary_size", vocabulary_size, 2), ("units", units, 1),
                            ("layers", layers, 1)):
        checks.check_int(arg, value, low)
    if not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
    if stateful and (batch_size is None or steps is None):
        raise ValueError(
            "A stateful model needs `batch_size` and `steps`. Received: "
            f"batch_size={batch_size!r}, steps={steps!r}"
        )
    inputs = keras.Input(batch_shape=(batch_size, steps), dtype="int32", name="words")
    if tie_weights:
        embedding = TiedEmbedding(vocabulary_size, units, name="embedding")
    else:
        embedding = keras.layers.Embedding(vocabulary_size, units, name="embedding")
    x = embedding(inputs)
    for i in range(layers):
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
        x = keras.layers.LSTM(units, return_sequences=True, stateful=stateful,
                              name=f"lstm_{i}")(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    if tie_weights:
        outputs = embedding(x, logits=True)
    else:
        outputs = keras.layers.Dense(vocabulary_size, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


class ResetStates(keras.callbacks.Callback):
    """Resets a stateful model's RNN states at the start of every epoch and
    of every evaluation, so that each pass starts from zeros and validation
    does not continue from (or leave its state to) training."""

    def _reset(self):
        for layer in self.model._flatten_layers():
            if isinstance(layer, keras.layers.RNN) and layer.stateful:
                layer.reset_state()

    def on_epoch_begin(self, epoch, logs=None):
        self._reset()

    def on_test_begin(self, logs=None):
        self._reset()

    def on_test_end(self, logs=None):
        self._reset()
