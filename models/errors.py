"""The one root exception, in the lowest layer so that every package can derive from it.

Every error Vigil raises on purpose derives from :class:`VigilError`, so callers (the command
line, the stream agents) can tell our errors from bugs and report them in one line. The
families of input and configuration errors are in :mod:`streams.errors`; the models' own is
:class:`models.registry.ModelError`.
"""


class VigilError(Exception):
    """Root of every error Vigil raises on purpose."""
