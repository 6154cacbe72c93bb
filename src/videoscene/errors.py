"""The exception types that user-facing entry points turn into a single clear line: exit 2 on the command
line (`-v` shows the traceback), the app's own message in the web app.

Every failure at an input, load or write boundary raises one of these; anything else is a bug.
"""


class VideoSceneError(Exception):
    """Bad input or a missing resource. The message says what is wrong and what to do, in one line."""


class InputError(VideoSceneError):
    """An argument, an input file's content or a config value is wrong."""


class LoadError(VideoSceneError):
    """A file we read (weights, checkpoint, cache, detector) is missing, corrupt or of another model."""


class OutputError(VideoSceneError):
    """An output location may not, or cannot, be written (protected folder, read-only, full disk)."""
