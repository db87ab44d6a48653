"""The one error type a user can cause in training: a bad setting, layout or input artifact."""


class TrainingConfigError(ValueError):
    """A training setting, layout or input cannot work; the message says what to change."""
