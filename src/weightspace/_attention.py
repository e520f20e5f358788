"""Attention that second derivatives pass through.

The fused kernels of ``torch.nn.functional.scaled_dot_product_attention`` (flash and
memory-efficient attention, on the CPU and on CUDA; the default attention of Hugging Face
transformers) have a backward that has no derivative of its own and no forward-mode rule, so
a Hessian-vector product through them fails, by either route. PyTorch's math backend writes
the same attention as matrix products and a softmax, which reverse- and forward-mode AD
differentiate to any order; its values agree with the fused kernels' to rounding.
:func:`differentiable_attention` selects it for the duration of a block (the Hessian
operators hold it for every product and record :data:`ATTENTION` in their metadata). Models
that write their attention by hand are not affected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = ["ATTENTION", "differentiable_attention"]

ATTENTION = "math sdpa for products"  # what the operators' metadata record


@contextlib.contextmanager
def differentiable_attention() -> Iterator[None]:
    """Run ``scaled_dot_product_attention`` by its math backend inside the block.

    The backend choice is PyTorch's process-wide setting; the previous one comes back on
    exit (also on an error), and blocks nest.

    Example:
        >>> import torch
        >>> q = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
        >>> sdpa = torch.nn.functional.scaled_dot_product_attention
        >>> with differentiable_attention():
        ...     (g,) = torch.autograd.grad(sdpa(q, q, q).sum(), q, create_graph=True)
        ...     (h,) = torch.autograd.grad(g.sum(), q)  # fails with the fused kernels
        >>> h.shape
        torch.Size([1, 2, 3, 4])
    """
    with sdpa_kernel(SDPBackend.MATH):
        yield
