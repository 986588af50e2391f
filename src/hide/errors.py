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


def exit_status(call, *args) -> int:
    """A command's exit status: 0 when `call(*args)` returns, 1 after printing a project error's
    message (it names the file or setting and the fix: no traceback)."""
    import sys

    try:
        call(*args)
    except HideError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
