"""The one error type of lrt, imported by every layer (and importing nothing of lrt)."""

__all__ = ["LrtError", "LrtTypeError"]


class LrtError(ValueError):
    """The one error type of lrt: bad input, with the argument named and what was expected.

    A subclass of ``ValueError``, so ``except ValueError`` catches it too.
    """


class LrtTypeError(LrtError, TypeError):
    """An argument of the wrong type (also a ``TypeError``)."""
