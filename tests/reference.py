"""Helpers for tests that build ``hear21passt`` models (the reference implementation)."""

import contextlib
import io
import warnings


@contextlib.contextmanager
def quiet():
    """``hear21passt`` prints shapes and warns while building and running its models."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
