"""The one exception type for mistakes in the user's input."""


class FacemtlError(Exception):
    """An error caused by the user's input; the CLI prints it as one line, no traceback."""
