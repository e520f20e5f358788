"""Objective: a flat parameter vector in, the exact mean loss of a :class:`Problem` out.

``Objective(problem)(theta)`` is ``Σ_b N_b·L_b / N`` over a fixed evaluation set, whatever the
batch sizes, computed with ``torch.func.functional_call`` so that the user's module is never
mutated: its parameters, buffers, ``training`` flags and ``state_dict`` are as they were.
The forward pass *and* the loss run inside one ``functional_call``, so a loss that reads the
model's parameters (an L2 term over ``model.parameters()``) is evaluated at ``theta`` too.
The model mode (``"eval"`` by default: BatchNorm running statistics, dropout off) is an
explicit, recorded choice, and so are the buffers the model reads: the model's own, or those
of a recorded snapshot (:meth:`Objective.with_buffers`), or re-estimated (:mod:`.buffers`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.func import functional_call

from . import _objective_checks as _checks
from ._batches import (
    Batch,
    WithLoss,
    as_batches,
    is_classification,
    logits_of,
    map_tensors,
    mean_over_batch,
    weighted_mean,
)
from .buffer_layout import BufferLayout
from .errors import LayoutMismatchError, WeightspaceError
from .layout import ParamLayout
from .problems import Problem

__all__ = ["Evaluation", "Objective"]

Mode = Literal["eval", "train"]
MODEL_BUFFERS = "model"  # buffers_source when the objective reads the model's own buffers


@dataclass(frozen=True)
class Evaluation:
    """The objective at one point.

    Attributes:
        loss: mean loss over the evaluation set.
        stderr: standard error of the mean over batches (NaN with one batch).
        accuracy: share of correct argmax predictions (classification), else None.
        batch_losses: ``(B,)`` mean loss of each batch.
    """

    loss: float
    stderr: float
    accuracy: float | None
    batch_losses: np.ndarray


class Objective:
    """``theta (n,) -> mean loss`` over a fixed evaluation set.

    Args:
        problem: model, loss and data.
        mode: ``"eval"`` (default; BatchNorm running statistics, dropout off) or
            ``"train"`` (batch statistics; running statistics are never written back).
        layout: which parameters ``theta`` holds (default: all trainable ones);
            parameters outside it are held at the model's values.
        data: evaluation data instead of ``problem.data`` (e.g. ``problem.test_data``).
        batch_size: split ``(X, y)`` data into batches of this size (memory; the value
            does not depend on it). Default: one batch. Iterables keep their batches.
        device: where to stage the data; default the model's device.
        buffers: the buffers the model reads (name -> tensor, e.g. a recorded snapshot's
            BatchNorm statistics, :meth:`Trajectory.buffers`) instead of the model's own;
            see :meth:`with_buffers`.
        buffers_source: what ``buffers`` are, for the metadata (e.g. ``"run a step 100"``).

    Example:
        >>> X, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
        >>> model = torch.nn.Linear(3, 1, bias=False).double()
        >>> obj = Objective(Problem(model, lambda out, t: ((out[:, 0] - t) ** 2).mean(), (X, y)))
        >>> w = torch.ones(3, dtype=torch.float64)
        >>> bool(torch.isclose(obj(w), ((X @ w - y) ** 2).mean()))
        True
    """

    def __init__(
        self,
        problem: Problem,
        mode: Mode = "eval",
        *,
        layout: ParamLayout | None = None,
        data: Any = None,
        batch_size: int | None = None,
        device: torch.device | str | None = None,
        buffers: Mapping[str, torch.Tensor] | None = None,
        buffers_source: str | None = None,
    ) -> None:
        if not isinstance(problem, Problem):
            raise WeightspaceError(
                f"problem: expected a weightspace Problem, got {type(problem).__name__}"
            )
        if mode not in ("eval", "train"):
            raise WeightspaceError(f"mode: expected 'eval' or 'train', got {mode!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise WeightspaceError(f"batch_size: expected a positive integer, got {batch_size!r}")
        self.problem = problem
        self.model = problem.model
        self.loss_fn = problem.loss_fn
        self.mode: Mode = mode
        self.layout = layout or ParamLayout.from_module(self.model)
        self.buffer_layout = BufferLayout.from_module(self.model)
        first = next(iter(self.model.parameters()))
        self.device = torch.device(device) if device is not None else first.device
        self.theta0 = self.layout.flatten(self.model).to(self.device).clone()
        self._module = WithLoss(self.model, self.loss_fn)
        self._pnames = tuple(f"model.{n}" for n in self.layout.names)
        names = set(self.layout.names)
        self._model_state = {
            n: p.detach() for n, p in self.model.named_parameters() if n not in names
        }
        self._model_state.update({n: b.detach() for n, b in self.model.named_buffers()})
        raw = as_batches(problem.data if data is None else data, batch_size, "data")
        self._raw = [
            (
                map_tensors(x, lambda t: t.to(self.device)),
                map_tensors(y, lambda t: t.to(self.device)),
            )
            for x, y in raw
        ]
        sizes = [int(problem.count_fn(x, y)) for x, y in self._raw]  # samples, or tokens
        self.batch_sizes = tuple(sizes)
        self.n_samples = int(sum(sizes))
        self.batch_weights = torch.tensor(sizes, dtype=torch.float64) / self.n_samples
        self._batch_cache: dict[torch.dtype, list[Batch]] = {}  # shared by with_buffers copies
        self._classification = is_classification(self._raw[0][1])
        self._set_buffers(buffers, buffers_source)

    # ------------------------------------------------------------------ buffers
    def _set_buffers(self, buffers: Mapping[str, torch.Tensor] | None, source: str | None) -> None:
        self._state_cache: dict[torch.dtype, dict[str, torch.Tensor]] = {}
        self._buffers = None if buffers is None else self._check_buffers(buffers, "buffers")
        self.buffers_source = source or (MODEL_BUFFERS if buffers is None else "given buffers")
        fixed = dict(self._model_state)
        fixed.update(self._buffers or {})
        self._fixed = fixed

    def _check_buffers(
        self, buffers: Mapping[str, torch.Tensor], what: str
    ) -> dict[str, torch.Tensor]:
        own = dict(self.model.named_buffers())
        out = {}
        for name, t in buffers.items():
            if name not in own:
                raise LayoutMismatchError(
                    f"{what}: {name!r} is not a buffer of the model; use the buffers of a run "
                    "of this model"
                )
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(own[name].shape):
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise LayoutMismatchError(
                    f"{what}: buffer {name!r} has shape {tuple(own[name].shape)} in the model, "
                    f"got {shape}; use the buffers of a run of this model"
                )
            out[name] = t.detach().to(device=self.device, dtype=own[name].dtype)
        return out

    def with_buffers(
        self, buffers: Mapping[str, torch.Tensor] | None, *, source: str | None = None
    ) -> Objective:
        """The same objective with the model reading ``buffers`` (name -> tensor).

        The evaluation data are shared, not copied. ``None`` goes back to the model's own
        buffers. Names must be buffers of the model; the ones not given keep the model's
        values. ``source`` says what they are and is recorded in :attr:`metadata`.

        Example::

            obj_t = obj.with_buffers(traj.buffers(i), source="run a step 100")
        """
        new = copy.copy(self)
        new._set_buffers(buffers, source)
        return new

    def replica(self) -> Objective:
        """This objective on a deep copy of the model (data shared), for another thread:
        ``functional_call`` puts a point's tensors into the module during a call, so two
        threads cannot share one. A loss whose closure reads the model reads the original."""
        new = copy.copy(self)
        new.model = copy.deepcopy(self.model)
        new._module, new._state_cache = WithLoss(new.model, self.loss_fn), {}
        return new

    def buffers(self) -> dict[str, torch.Tensor]:
        """The persistent buffers the model reads here (:attr:`buffer_layout`'s names)."""
        return {n: self._fixed[n] for n in self.buffer_layout.names}

    def buffer_vector(self) -> torch.Tensor:
        """The buffers the objective reads, flat float64 on the CPU (:attr:`buffer_layout`)."""
        return self.buffer_layout.flatten(self._fixed)

    # ------------------------------------------------------------------ staging
    @property
    def n_batches(self) -> int:
        return len(self._raw)

    def _stage(self, raw: list[Batch], dtype: torch.dtype) -> list[Batch]:
        def cast(t: torch.Tensor) -> torch.Tensor:
            t = t.to(self.device)
            return t.to(dtype) if t.is_floating_point() else t

        return [(map_tensors(x, cast), map_tensors(y, cast)) for x, y in raw]

    def _state(self, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Buffers and fixed parameters cast to ``dtype``, keyed for ``functional_call``."""
        if dtype not in self._state_cache:

            def cast(t: torch.Tensor) -> torch.Tensor:
                return t.to(dtype) if t.is_floating_point() else t

            # clones: train-mode BatchNorm writes running statistics into these, never the model's
            self._state_cache[dtype] = {
                f"model.{n}": cast(t).clone() for n, t in self._fixed.items()
            }
        return self._state_cache[dtype]

    def _staged(self, dtype: torch.dtype) -> list[Batch]:
        """The batches cast to ``dtype`` (cached, once per dtype)."""
        if dtype not in self._batch_cache:
            self._batch_cache[dtype] = self._stage(self._raw, dtype)
        return self._batch_cache[dtype]

    @contextlib.contextmanager
    def _model_mode(self) -> Iterator[None]:
        training = self.mode == "train"
        saved = [(m, m.training) for m in self.model.modules()]
        try:
            for m, _ in saved:
                m.training = training
            yield
        finally:
            for m, flag in saved:
                m.training = flag

    # ------------------------------------------------------------------ evaluation
    def _params(
        self,
        theta: torch.Tensor | Mapping[str, torch.Tensor],
        buffers: Mapping[str, torch.Tensor] | None,
    ) -> dict[str, torch.Tensor]:
        if isinstance(theta, Mapping):
            missing = [n for n in self.layout.names if n not in theta]
            if missing:
                raise LayoutMismatchError(
                    f"theta: the mapping lacks {missing[0]!r}; give every name of the layout"
                )
            views, dtype = [theta[n] for n in self.layout.names], theta[self.layout.names[0]].dtype
        else:
            views, dtype = list(self.layout.unflatten(theta).values()), theta.dtype
        params = dict(self._state(dtype))
        if buffers:
            params.update({f"model.{n}": t for n, t in buffers.items()})
        params.update(zip(self._pnames, views))
        return params

    def forward(
        self,
        theta: torch.Tensor | Mapping[str, torch.Tensor],
        inputs: Any,
        *,
        buffers: Mapping[str, torch.Tensor] | None = None,
    ) -> Any:
        """The model's outputs at ``theta`` on ``inputs`` (pure; usable under torch.func).

        ``theta`` is a flat ``(n,)`` vector in the layout, or a mapping from every layout
        name to its tensor (then tensors that need no derivative can be passed as constants,
        and autograd skips the work only they would need). ``buffers`` (name -> tensor in
        the compute dtype) override the objective's buffers for this call.
        """
        with self._model_mode():
            return functional_call(
                self._module, self._params(theta, buffers), (inputs, None, False)
            )

    def forward_loss(
        self,
        theta: torch.Tensor | Mapping[str, torch.Tensor],
        inputs: Any,
        targets: Any,
        *,
        buffers: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[Any, torch.Tensor]:
        """``(outputs, mean batch loss)`` at ``theta``: forward and loss in one
        ``functional_call``, so a loss that reads the model's parameters sees ``theta``."""
        with self._model_mode():
            out, loss = functional_call(
                self._module, self._params(theta, buffers), (inputs, targets)
            )
        return out, mean_over_batch(loss, inputs, targets, self.problem)

    def batch(self, b: int, dtype: torch.dtype) -> Batch:
        """Batch ``b`` staged on the device in ``dtype``."""
        return self._staged(dtype)[b]

    def batch_loss(self, theta: torch.Tensor | Mapping[str, torch.Tensor], b: int) -> torch.Tensor:
        """Mean loss of batch ``b`` at ``theta`` (differentiable; pure under torch.func).
        ``theta`` as in :meth:`forward`."""
        dtype = theta[self.layout.names[0]].dtype if isinstance(theta, Mapping) else theta.dtype
        inputs, targets = self.batch(b, dtype)
        return self.forward_loss(theta, inputs, targets)[1]

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        """Mean loss over the evaluation set, ``Σ_b (N_b/N)·L_b``: a scalar tensor."""
        total = None
        for b, w in enumerate(self.batch_weights.tolist()):
            term = self.batch_loss(theta, b) * w
            total = term if total is None else total + term
        return total

    def evaluate(self, theta: torch.Tensor) -> Evaluation:
        """Loss, its standard error over batches, and accuracy, without gradients."""
        losses, correct = [], []
        with torch.no_grad():
            for b in range(self.n_batches):
                inputs, targets = self.batch(b, theta.dtype)
                out, loss = self.forward_loss(theta, inputs, targets)
                losses.append(loss.reshape(()).to(torch.float64))
                if self._classification:
                    correct.append((logits_of(out).argmax(-1) == targets).sum().double())
            per_batch = torch.stack(losses).cpu().numpy()
            acc = float(torch.stack(correct).sum()) / self.n_samples if correct else None
        mean, stderr = weighted_mean(per_batch[None], self.batch_weights.numpy())
        return Evaluation(float(mean[0]), float(stderr[0]), acc, per_batch)

    # ------------------------------------------------------------------ checks
    def model_loss(self) -> float:
        """The model's own loss (calling the module itself) at its current parameters."""
        return _checks.model_loss(self)

    def check(self, theta: torch.Tensor | None = None, *, rtol: float = 1e-5) -> float:
        """Determinism probe and centre check; run before a long loop.

        Evaluates twice at ``theta`` (default: the model's parameters) and requires equal
        values; at the model's parameters also requires the model's own loss (with the
        model's own buffers, whatever buffers this objective reads).

        Returns:
            the loss at ``theta``.

        Raises:
            WeightspaceError: naming the likely cause (dropout or BatchNorm in train mode,
            data that reshuffles, parameters outside the layout).
        """
        return _checks.check(self, theta, rtol)

    @property
    def metadata(self) -> dict[str, Any]:
        """What every result computed from this objective records about it."""
        return {
            "problem": self.problem.name,
            "mode": self.mode,
            "n_samples": self.n_samples,
            "n_batches": self.n_batches,
            "batch_sizes": sorted(set(self.batch_sizes)),
            "n_params": self.layout.numel,
            "device": str(self.device),
            "task": "classification" if self._classification else "other",
            "buffers": self.buffers_source,
        }
