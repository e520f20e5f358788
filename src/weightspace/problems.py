"""Resolve ``--problem`` specs: an embedded name, ``module:function`` or ``file.py:function``."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from . import zoo
from .errors import WeightspaceError
from .objective import Problem


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
    target, _, func = spec.rpartition(":")
    if not target or not func:
        raise WeightspaceError(
            f"--problem: unknown problem {spec!r}; give an embedded name "
            f"({', '.join(zoo.names())}), module:function or path/to/file.py:function"
        )
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise WeightspaceError(f"--problem: file {target!r} does not exist; check the path")
        name = f"_weightspace_user_{path.stem}"
        mod_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        try:
            mod_spec.loader.exec_module(module)
        except Exception as e:
            raise WeightspaceError(f"--problem: importing {target!r} failed: {e!r}") from e
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise WeightspaceError(
                f"--problem: cannot import module {target!r} ({e}); check PYTHONPATH or give "
                "path/to/file.py:function"
            ) from e
    fn = getattr(module, func, None)
    if not callable(fn):
        raise WeightspaceError(f"--problem: {target!r} has no function {func!r}")
    return fn


def load_problem(spec: str, *, seed: int | None = None) -> Problem:
    """Build a :class:`Problem` from a spec.

    Args:
        spec: an embedded name (see :func:`weightspace.zoo.names`), ``module:function`` or
            ``path/to/file.py:function``; the function returns a Problem.
        seed: initialisation seed. Passed as ``seed=`` when the function accepts it;
            otherwise the function runs under a forked global RNG seeded with it.

    Raises:
        WeightspaceError: unknown name, import failure, or a function that does not
        return a Problem.
    """
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
            result = fn(seed=seed) if takes_seed and seed is not None else fn()
    if not isinstance(result, Problem):
        raise WeightspaceError(
            f"--problem: {spec!r} returned {type(result).__name__}, expected a "
            "weightspace.Problem(model, loss_fn, data)"
        )
    return result
