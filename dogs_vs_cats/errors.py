"""The one exception a user can act on."""


class StageError(Exception):
    """A problem the user can fix: printed as one line, without a traceback."""
