"""Problems: a model, a loss and data (:class:`Problem`), and the specs that build them (an
embedded name, ``module:function`` or ``path/to/file.py:function``; :func:`load_problem`)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from ._batches import count
from .checks import check_seed
from .errors import WeightspaceError, first_line

if TYPE_CHECKING:  # at run time, __getattr__ imports them on first use
    from .families import causal_lm, image_classification, masked_lm, sequence_classification

__all__ = [
    "Problem",
    "causal_lm",
    "image_classification",
    "load_model",
    "load_problem",
    "masked_lm",
    "sequence_classification",
]
_FAMILIES = ("causal_lm", "image_classification", "masked_lm", "sequence_classification")


def __getattr__(name: str) -> Any:
    """The model families' problems (:mod:`weightspace.families`), imported on first use."""
    if name in _FAMILIES:
        from . import families

        return getattr(families, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Problem:
    """A model, a loss and the data it is measured on.

    Args:
        model: the network; never modified by weightspace's analyses.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, the mean over the batch
            (PyTorch's default reduction), or the sum with ``reduction="sum"``. It may read
            the model's parameters (a regulariser): it runs with them set to the point.
        data: ``(X, y)`` tensors (``X`` may also be a dict of tensors, ``y`` a tensor or a
            dict of tensors, indexed by sample), or an iterable of ``(inputs, targets)``
            batches (a DataLoader without shuffling). Inputs may be a tensor, a tuple of
            tensors (positional arguments) or a dict (keyword arguments); targets a tensor or
            a dict of tensors.
        test_data: optional held-out data in the same form.
        name: a label for captions and metadata.
        reduction: how ``loss_fn`` reduces over a batch.
        info: facts about the problem (its family, its weighting, its source).
        count_fn: ``count_fn(inputs, targets) -> int``, what a batch's mean loss averages
            over: the batch's weight in the mean over the data (and the divisor of a
            ``reduction="sum"`` loss). Default: the number of samples (the leading size of
            the targets). Language models count non-ignored target tokens
            (:func:`weightspace.problems.causal_lm`).
    """

    model: torch.nn.Module
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor]
    data: Any
    test_data: Any = None
    name: str = "problem"
    reduction: Literal["mean", "sum"] = "mean"
    info: dict[str, Any] = field(default_factory=dict)
    count_fn: Callable[[Any, Any], int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, torch.nn.Module):
            raise WeightspaceError(
                f"Problem.model: expected a torch.nn.Module, got {type(self.model).__name__}"
            )
        if not callable(self.loss_fn):
            raise WeightspaceError(
                f"Problem.loss_fn: expected a callable loss_fn(outputs, targets), got "
                f"{type(self.loss_fn).__name__}"
            )
        if self.count_fn is None:
            self.count_fn = count
        if not callable(self.count_fn):
            raise WeightspaceError(
                f"Problem.count_fn: expected a callable count_fn(inputs, targets) -> int, got "
                f"{type(self.count_fn).__name__}"
            )
        if self.reduction not in ("mean", "sum"):
            raise WeightspaceError(
                f"Problem.reduction: expected 'mean' or 'sum', got {self.reduction!r}"
            )


@contextlib.contextmanager
def _on_path(folder: str | None) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for the duration (nothing for None)."""
    added = folder is not None and folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def _factory(spec: str) -> Callable[..., object]:
    from . import zoo

    target, _, func = spec.rpartition(":")
    if not target or not func:
        raise WeightspaceError(
            f"problem: unknown problem {spec!r}; give an embedded name "
            f"({', '.join(zoo.names())}), module:function or path/to/file.py:function"
        )
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise WeightspaceError(f"problem: file {target!r} does not exist; check the path")
        name = f"_weightspace_user_{path.stem}"
        mod_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        try:
            mod_spec.loader.exec_module(module)
        except Exception as e:
            raise WeightspaceError(f"problem: importing {target!r} failed: {e!r}") from e
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise WeightspaceError(
                f"problem: cannot import module {target!r} ({e}); check PYTHONPATH or give "
                "path/to/file.py:function"
            ) from e
    fn = getattr(module, func, None)
    if not callable(fn):
        raise WeightspaceError(f"problem: {target!r} has no function {func!r}")
    return fn


def load_model(spec: str, *, seed: int | None = None) -> torch.nn.Module:
    """The model of a spec without its data: what matching checkpoint tensors needs
    (``weightspace import --problem``). ``hf-*:DIR`` specs load the folder's model alone (no
    data file); other specs build their problem (:func:`load_problem`) and give its model.
    """
    if spec.startswith("hf-"):
        from .families import load_hf_model

        return load_hf_model(spec)
    return load_problem(spec, seed=seed).model


def load_problem(
    spec: str,
    *,
    seed: int | None = None,
    data: str | Path | None = None,
    seq_len: int = 128,
    batch_size: int | None = None,
) -> Problem:
    """Build a :class:`Problem` from a spec.

    Args:
        spec: an embedded name (see :func:`weightspace.zoo.names`), ``module:function`` or
            ``path/to/file.py:function`` (the function returns a Problem), or a Hugging Face
            model folder written by ``save_pretrained``: ``hf-causal-lm:DIR``,
            ``hf-masked-lm:DIR`` or ``hf-sequence-classification:DIR`` (with ``data``; see
            :func:`weightspace.families.load_hf_problem`).
        seed: initialisation seed. Passed as ``seed=`` when the function accepts it;
            otherwise the function runs under a forked global RNG seeded with it. For
            ``hf-masked-lm``, the seed of the masking.
        data: the data file of an ``hf-*`` spec (``.txt``, ``.jsonl`` or ``.npy``); only
            those specs take one.
        seq_len: tokens per sequence of an ``hf-*`` spec's data (default 128).
        batch_size: sequences per batch of an ``hf-*`` spec's data (default: one batch).

    Raises:
        WeightspaceError: unknown name, import failure, or a function that does not
        return a Problem.
    """
    from . import zoo  # zoo's problems are Problems: imported when a spec is resolved

    if seed is not None:
        check_seed(seed, "seed")
    if spec.startswith("hf-"):
        from .families import load_hf_problem

        if data is None:
            raise WeightspaceError(
                f"data: {spec!r} needs a data file (data=path/to/text.txt, .jsonl or .npy)"
            )
        return load_hf_problem(
            spec, data, seq_len=seq_len, batch_size=batch_size, seed=0 if seed is None else seed
        )
    if data is not None:
        raise WeightspaceError(
            f"data: a data file is read only by hf-* specs, not {spec!r}; the problem's "
            "function provides its data"
        )
    if spec in zoo.PROBLEMS:
        return zoo.problem(spec, seed=0 if seed is None else seed)
    target = spec.rpartition(":")[0]
    folder = str(Path(target).resolve().parent) if target.endswith(".py") else None
    with _on_path(folder):  # as `python file.py` does: modules beside the file import
        fn = _factory(spec)
        try:
            takes_seed = "seed" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            takes_seed = False
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            try:
                result = fn(seed=seed) if takes_seed and seed is not None else fn()
            except Exception as e:  # the user's code: one line, the traceback with -v
                name = getattr(fn, "__name__", "the factory")
                raise WeightspaceError(
                    f"problem: calling {name}() of {spec!r} raised {type(e).__name__}: "
                    f"{first_line(e)}"
                ) from e
    if not isinstance(result, Problem):
        raise WeightspaceError(
            f"problem: {spec!r} returned {type(result).__name__}, expected a "
            "weightspace.Problem(model, loss_fn, data)"
        )
    return result
