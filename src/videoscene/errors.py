"""The one exception type that user-facing entry points turn into a single clear line and a non-zero exit."""


class VideoSceneError(Exception):
    """Bad input or a missing resource. The message says what is wrong and what to do, in one line."""
