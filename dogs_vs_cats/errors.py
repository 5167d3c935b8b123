"""The one exception a user can act on."""


class StageError(Exception):
    """A problem the user can fix: printed as one line, without a traceback."""


def not_a_file(path):
    """What `path`, which is not a regular file, is instead, for an error: 'is a folder',
    'is not a regular file (a FIFO?)' or 'not found'. Never 'not found' for what exists."""
    if path.is_dir():
        return "is a folder"
    return "is not a regular file (a FIFO?)" if path.exists() else "not found"
