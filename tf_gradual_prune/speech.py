"""The speech recipe: spoken digit strings, their log-mel features and CTC
labels, and the recogniser that learns them.

One place for what the demo (`tf-gradual-prune demo`), the speech benchmarks
and the speech tests share: the strings come from `speech_data.speech_digits`
(or any waves and transcripts), `audio.AudioFeatures` turns them into
log-mel frames, the alphabet `DIGITS` into CTC labels, `audio.feature_dataset`
into padded batches, and `models.speech_model` is the recogniser, compiled
with Adam.

Example:

```python
task = tf_gradual_prune.speech.DigitStrings.load(train_size=48, test_size=8, max_digits=3)
train, steps = task.train_dataset(seed=0)
model = task.recogniser(units=16, layers=1, conv_filters=16)
schedule = tf_gradual_prune.RampedThresholdSchedule.for_training(
    2, steps, target_sparsity=0.8)
model.fit(train.repeat(), epochs=2, steps_per_epoch=steps,
          callbacks=[tf_gradual_prune.GradualPruning(schedule)])
print(tf_gradual_prune.models.error_rates(model, task.test, task.alphabet))
```
"""

from tf_gradual_prune import audio, models, speech_data

#: The characters of a digit string: the ten digits and the space between them.
DIGITS = "0123456789 "


class DigitStrings:
    """Featurised spoken strings for a CTC recogniser: a training and a test
    split, their log-mel features, transcripts and labels.

    Build it with `DigitStrings.load(...)` (digit strings of
    `speech_data.speech_digits`: the embedded synthetic voices or FSDD) or
    directly from waves and transcripts.

    Args:
        train: Pair `(waves, transcripts)`: lists of 1-D float arrays at the
            features' sample rate and of strings.
        test: The same for the test split.
        batch_size: Integer >= 1, utterances per batch of `train_dataset`
            and `test`. Defaults to `32`.
        alphabet: A `models.Alphabet`. Defaults to `Alphabet(DIGITS)`.
        features: An `audio.AudioFeatures`. Defaults to its defaults (40
            log-mel bins, 25 ms windows every 10 ms).
        verbose: Boolean. Show a progress bar while featurising.

    Attributes:
        x, x_test: Lists of `(frames, bins)` feature arrays.
        texts, test_texts: The transcripts.
        y, y_test: The transcripts as label sequences of `alphabet`.
        test: The test split as a padded `tf.data.Dataset` (not shuffled).
        alphabet, features, batch_size: As given.
    """

    def __init__(self, train, test, batch_size=32, alphabet=None, features=None, verbose=True):
        (waves, texts), (test_waves, test_texts) = train, test
        self.alphabet = alphabet or models.Alphabet(DIGITS)
        self.features = features or audio.AudioFeatures()
        self.batch_size = batch_size
        if verbose:
            print("features (log-mel, tensorflow-io):")
        self.x = self.features.extract(waves, verbose=verbose)
        self.x_test = self.features.extract(test_waves, verbose=verbose)
        self.texts, self.test_texts = list(texts), list(test_texts)
        self.y = [self.alphabet.encode(t) for t in self.texts]
        self.y_test = [self.alphabet.encode(t) for t in self.test_texts]
        self.test = audio.feature_dataset(self.x_test, self.y_test, batch_size=batch_size)

    @classmethod
    def load(cls, source="synthetic", data_dir=None, download=False, train_size=1200,
             test_size=400, max_digits=7, seed=0, batch_size=32, verbose=True):
        """Digit strings of `speech_data.speech_digits` (training strings from
        five speakers, test strings from the sixth), featurised.

        Args:
            source: `"synthetic"` (embedded, no files) or `"fsdd"`.
            data_dir: For `"fsdd"`, see `speech_data.fsdd_recordings`.
            download: For `"fsdd"`, see `speech_data.fsdd_recordings`.
            train_size: Integer, training strings.
            test_size: Integer, test strings.
            max_digits: Integer >= 1, the most digits of a string.
            seed: Integer, chooses the strings.
            batch_size: See `DigitStrings`.
            verbose: See `DigitStrings`.

        Returns:
            A `DigitStrings`.
        """
        train, test = speech_data.speech_digits(
            source, data_dir=data_dir, download=download, train_size=train_size,
            test_size=test_size, max_digits=max_digits, seed=seed)
        return cls(train, test, batch_size=batch_size, verbose=verbose)

    @property
    def num_features(self):
        """Features per frame (mel bins)."""
        return int(self.x[0].shape[1])

    def train_dataset(self, seed=None):
        """The training split as padded batches, shuffled with `seed` (None:
        in order); returns `(dataset, steps)`, `steps` the batches of one
        pass (`dataset.repeat()` with `steps_per_epoch=steps` gives epochs
        of equal length)."""
        data = audio.feature_dataset(self.x, self.y, batch_size=self.batch_size,
                                     shuffle_seed=seed)
        return data, sum(1 for _ in data)

    def recogniser(self, learning_rate=1e-3, **options):
        """A new `models.speech_model` for these features and this alphabet,
        compiled with Adam at `learning_rate`; `options` go to
        `speech_model` (`units`, `layers`, `bidirectional`, ...)."""
        import keras

        model = models.speech_model(self.num_features, len(self.alphabet), **options)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate))
        return model
