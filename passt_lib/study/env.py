"""Kept for ``passt_lib.inference.describe``, which still imports ``git_state`` from here;
everything else imports :mod:`passt_lib.provenance`, where it lives."""

from passt_lib.provenance import git_state

__all__ = ["git_state"]
