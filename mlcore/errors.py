"""Errors of the ML core that light modules raise or catch without importing the ML stack."""


class TrainingError(ValueError):
    """A training that cannot run or failed; the message says why."""
