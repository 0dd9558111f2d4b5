"""The one root exception and its families.

Every error Vigil raises on purpose derives from :class:`VigilError`, so callers (the CLI, the
stream agents) can tell our errors from bugs and report them in one line.
"""


class VigilError(Exception):
    """Root of every error Vigil raises on purpose."""


class InputError(VigilError):
    """The input itself is unusable: missing, empty, truncated or not a video, bad frames."""


class ConfigurationError(VigilError):
    """Vigil is set up wrongly: a missing model pack, a corrupt model bundle, a bad setting."""
