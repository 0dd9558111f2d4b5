"""The families of the one root exception, :class:`models.errors.VigilError`.

Every error Vigil raises on purpose derives from :class:`~models.errors.VigilError` (import it
from :mod:`models.errors`), so callers (the CLI, the stream agents) can tell our errors from
bugs and report them in one line.
"""

from models.errors import VigilError


class InputError(VigilError):
    """The input itself is unusable: missing, empty, truncated or not a video, bad frames."""


class ConfigurationError(VigilError):
    """Vigil is set up wrongly: a missing model pack, a corrupt model bundle, a bad setting."""
