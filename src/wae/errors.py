"""Errors a user can act on. Stages print their message and exit non-zero, without a traceback."""


class WAEError(Exception):
    """Base class of the errors that explain themselves to the user."""


class DataError(WAEError):
    """MNIST is missing, corrupt or inconsistent."""


class TrackingError(WAEError):
    """The MLflow tracking store cannot be reached or used."""


class TrainingDiverged(WAEError):
    """A loss became NaN or infinite."""


class TrainingInterrupted(WAEError):
    """SIGINT or SIGTERM stopped training after a checkpoint was saved."""
