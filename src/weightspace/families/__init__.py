"""Problems for the common model families, built for the user: language models (causal and
masked), sequence classifiers and image classifiers, each with its inputs, its loss, its ignore
index and its exact weighting over uneven batches.

A language model's objective is the mean over *target tokens*: a batch weighs as many
non-ignored labels as it holds (``Problem.count_fn``), so ``Objective(problem)(theta)`` is
``Σ token losses / Σ target tokens`` whatever the padding, the masking and the batch sizes, and
so are the Hessian-vector products and the grids built on it. Classifiers weigh samples.

Example::

    import weightspace as ws
    problem = ws.problems.causal_lm(model, {"input_ids": ids, "attention_mask": mask})
    objective = ws.Objective(problem, batch_size=8)

The same problems reach the command line through ``--problem hf-causal-lm:DIR --data FILE``
(:func:`load_hf_problem`).
"""

from __future__ import annotations

from ._image import image_classification
from ._spec import HF_KINDS, load_hf_model, load_hf_problem
from ._text import IGNORE_INDEX, causal_lm, masked_lm, sequence_classification

__all__ = [
    "HF_KINDS",
    "IGNORE_INDEX",
    "causal_lm",
    "image_classification",
    "load_hf_model",
    "load_hf_problem",
    "masked_lm",
    "sequence_classification",
]
