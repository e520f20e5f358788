"""Connecting two networks: permutation alignment (Git Re-Basin)."""

from ._spec import PermutationSpec, permutation_spec
from .align import Alignment, align

__all__ = ["Alignment", "PermutationSpec", "align", "permutation_spec"]
