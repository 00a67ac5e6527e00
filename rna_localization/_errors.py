"""The errors the command line reports in one line, without a traceback.

A user's input or the machine's state is at fault, and the message says what
to do: ``ValueError`` and ``OSError`` (bad values, missing or unreadable
files), ``ImportError`` (an optional package to install, named), and the two
types here for the cases those do not fit. Any other
exception — a ``TypeError`` from a bug in the package or a library above
all — keeps its traceback, so that it can be reported and fixed.
"""

from __future__ import annotations

__all__ = ["InputTypeError", "PipelineError", "USER_ERRORS"]


class InputTypeError(TypeError):
    """A file holds the wrong kind of data (e.g. a float segmentation); the message names it.

    Examples
    --------
    >>> issubclass(InputTypeError, TypeError)
    True
    """


class PipelineError(RuntimeError):
    """The pipeline cannot go on as things stand (a lock held, workers killed, a client failed).

    Examples
    --------
    >>> issubclass(PipelineError, RuntimeError)
    True
    """


#: Exceptions :func:`rna_localization.cli.main` prints as one ``error:`` line.
USER_ERRORS = (ValueError, OSError, ImportError, InputTypeError, PipelineError)
