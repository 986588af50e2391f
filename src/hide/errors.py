"""The project's own errors. Each message is one paragraph that names the file, record or setting at
fault and says what to do, so `train.py` prints it without a traceback (tests/test_bad_input.py)."""


class HideError(Exception):
    """Base of every error whose message is meant for the user as it stands."""


class ConfigError(HideError, ValueError):
    """A setting is invalid, or two settings conflict."""


class TrainingDivergedError(HideError, FloatingPointError):
    """The loss became NaN or infinite; the checkpoints written before it stay as they were."""


class ScoringError(HideError, RuntimeError):
    """A score cannot be given with the same definition as the run's other scores."""
