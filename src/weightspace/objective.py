"""Problem and Objective: a flat parameter vector in, the exact mean loss out.

``Objective(problem)(theta)`` is ``Σ_b N_b·L_b / N`` over a fixed evaluation set, whatever the
batch sizes, computed with ``torch.func.functional_call`` so that the user's module is never
mutated: its parameters, buffers, ``training`` flags and ``state_dict`` are as they were.
The model mode (``"eval"`` by default: BatchNorm running statistics, dropout off) is an
explicit, recorded choice.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch.func import functional_call

from .errors import LayoutMismatchError, WeightspaceError
from .layout import ParamLayout

Mode = Literal["eval", "train"]
Batch = tuple[Any, torch.Tensor]


@dataclass
class Problem:
    """A model, a loss and the data it is measured on.

    Args:
        model: the network; never modified by weightspace's analyses.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, the mean over the batch
            (PyTorch's default reduction), or the sum with ``reduction="sum"``.
        data: ``(X, y)`` tensors, or an iterable of ``(inputs, targets)`` batches (a
            DataLoader without shuffling). Inputs may be a tensor, a tuple of tensors
            (positional arguments) or a dict (keyword arguments).
        test_data: optional held-out data in the same form.
        name: a label for captions and metadata.
        reduction: how ``loss_fn`` reduces over a batch.
    """

    model: torch.nn.Module
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor]
    data: Any
    test_data: Any = None
    name: str = "problem"
    reduction: Literal["mean", "sum"] = "mean"
    info: dict[str, Any] = field(default_factory=dict)

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
        if self.reduction not in ("mean", "sum"):
            raise WeightspaceError(
                f"Problem.reduction: expected 'mean' or 'sum', got {self.reduction!r}"
            )


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


def _map_tensors(x: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, (tuple, list)):
        return type(x)(_map_tensors(v, fn) for v in x)
    if isinstance(x, dict):
        return {k: _map_tensors(v, fn) for k, v in x.items()}
    return x


def _as_batches(data: Any, batch_size: int | None, what: str) -> list[Batch]:
    """Normalise ``(X, y)`` or an iterable of batches into a list of ``(inputs, targets)``."""
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in data)
    ):
        X, y = (torch.as_tensor(v) for v in data)
        if y.ndim == 0 or len(X) != len(y):
            raise WeightspaceError(
                f"{what}: X has {len(X)} samples but y has shape {tuple(y.shape)}; give one "
                "target per sample"
            )
        n = len(y)
        if n == 0:
            raise WeightspaceError(f"{what}: the data set is empty; give at least one sample")
        size = n if batch_size is None else int(batch_size)
        return [(X[a : a + size], y[a : a + size]) for a in range(0, n, size)]
    if not isinstance(data, Iterable):
        raise WeightspaceError(
            f"{what}: expected (X, y) tensors or an iterable of (inputs, targets) batches, "
            f"got {type(data).__name__}"
        )
    batches = []
    for i, b in enumerate(data):
        if not isinstance(b, (tuple, list)) or len(b) != 2:
            raise WeightspaceError(
                f"{what}: batch {i} is not an (inputs, targets) pair; "
                "yield (inputs, targets) from the data iterable"
            )
        batches.append((b[0], torch.as_tensor(b[1])))
    if not batches:
        raise WeightspaceError(f"{what}: the data iterable yielded no batch")
    return batches


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
        first = next(iter(self.model.parameters()))
        self.device = torch.device(device) if device is not None else first.device
        self.theta0 = self.layout.flatten(self.model).to(self.device).clone()
        names = set(self.layout.names)
        self._fixed = {n: p.detach() for n, p in self.model.named_parameters() if n not in names}
        self._fixed.update({n: b.detach() for n, b in self.model.named_buffers()})
        raw = _as_batches(problem.data if data is None else data, batch_size, "data")
        self._raw = [
            (_map_tensors(x, lambda t: t.to(self.device)), y.to(self.device)) for x, y in raw
        ]
        sizes = [len(y) for _, y in self._raw]
        self.batch_sizes = tuple(sizes)
        self.n_samples = int(sum(sizes))
        self.batch_weights = torch.tensor(sizes, dtype=torch.float64) / self.n_samples
        self._cache: dict[torch.dtype, tuple[dict[str, torch.Tensor], list[Batch]]] = {}
        self._classification = self._detect_classification()

    # ------------------------------------------------------------------ staging
    @property
    def n_batches(self) -> int:
        return len(self._raw)

    def _staged(self, dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], list[Batch]]:
        """Buffers, fixed parameters and batches cast to ``dtype`` (cached, once per dtype)."""
        if dtype not in self._cache:

            def cast(t: torch.Tensor) -> torch.Tensor:
                return t.to(dtype) if t.is_floating_point() else t

            # clones: train-mode BatchNorm writes running statistics into these, never the model's
            state = {n: cast(t).clone() for n, t in self._fixed.items()}
            batches = [(_map_tensors(x, cast), cast(y)) for x, y in self._raw]
            self._cache[dtype] = (state, batches)
        return self._cache[dtype]

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
    def forward(self, theta: torch.Tensor | Mapping[str, torch.Tensor], inputs: Any) -> Any:
        """The model's outputs at ``theta`` on ``inputs`` (pure; usable under torch.func).

        ``theta`` is a flat ``(n,)`` vector in the layout, or a mapping from every layout
        name to its tensor (then tensors that need no derivative can be passed as constants,
        and autograd skips the work only they would need).
        """
        if isinstance(theta, Mapping):
            missing = [n for n in self.layout.names if n not in theta]
            if missing:
                raise LayoutMismatchError(
                    f"theta: the mapping lacks {missing[0]!r}; give every name of the layout"
                )
            named, dtype = theta, theta[self.layout.names[0]].dtype
        else:
            named, dtype = self.layout.unflatten(theta), theta.dtype
        state, _ = self._staged(dtype)
        params = {**state, **named}
        with self._model_mode():
            if isinstance(inputs, dict):
                return functional_call(self.model, params, (), inputs)
            args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
            return functional_call(self.model, params, args)

    def batch(self, b: int, dtype: torch.dtype) -> Batch:
        """Batch ``b`` staged on the device in ``dtype``."""
        return self._staged(dtype)[1][b]

    def batch_loss(self, theta: torch.Tensor | Mapping[str, torch.Tensor], b: int) -> torch.Tensor:
        """Mean loss of batch ``b`` at ``theta`` (differentiable; pure under torch.func).
        ``theta`` as in :meth:`forward`."""
        dtype = theta[self.layout.names[0]].dtype if isinstance(theta, Mapping) else theta.dtype
        inputs, targets = self.batch(b, dtype)
        loss = self.loss_fn(self.forward(theta, inputs), targets)
        if self.problem.reduction == "sum":
            loss = loss / len(targets)
        return loss

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
                out = self.forward(theta, inputs)
                loss = self.loss_fn(out, targets)
                if self.problem.reduction == "sum":
                    loss = loss / len(targets)
                losses.append(loss.reshape(()).to(torch.float64))
                if self._classification:
                    correct.append((out.argmax(-1) == targets).sum().to(torch.float64))
            per_batch = torch.stack(losses).cpu().numpy()
            acc = float(torch.stack(correct).sum()) / self.n_samples if correct else None
        w = self.batch_weights.numpy()
        mean = float(w @ per_batch)
        if len(per_batch) > 1:
            var = float(w @ (per_batch - mean) ** 2) * len(w) / (len(w) - 1)
            stderr = math.sqrt(var / len(per_batch))
        else:
            stderr = math.nan
        return Evaluation(mean, stderr, acc, per_batch)

    def _detect_classification(self) -> bool:
        _, targets = self._raw[0]
        return (
            not targets.is_floating_point()
            and targets.ndim == 1
            and not targets.is_complex()
            and targets.dtype != torch.bool
        )

    # ------------------------------------------------------------------ checks
    def model_loss(self) -> float:
        """The model's own loss (calling the module itself) at its current parameters."""
        buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}
        total = 0.0
        try:
            with torch.no_grad(), self._model_mode():
                batches = self._staged(self.theta0.dtype)[1]  # data cast as at theta0
                for (inputs, targets), w in zip(batches, self.batch_weights.tolist()):
                    if isinstance(inputs, dict):
                        out = self.model(**inputs)
                    elif isinstance(inputs, (tuple, list)):
                        out = self.model(*inputs)
                    else:
                        out = self.model(inputs)
                    loss = self.loss_fn(out, targets)
                    if self.problem.reduction == "sum":
                        loss = loss / len(targets)
                    total += w * float(loss)
        finally:
            with torch.no_grad():
                for n, b in self.model.named_buffers():
                    b.copy_(buffers[n])
        return total

    def check(self, theta: torch.Tensor | None = None, *, rtol: float = 1e-5) -> float:
        """Determinism probe and centre check; run before a long loop.

        Evaluates twice at ``theta`` (default: the model's parameters) and requires equal
        values; at the model's parameters also requires the model's own loss.

        Returns:
            the loss at ``theta``.

        Raises:
            WeightspaceError: naming the likely cause (dropout or BatchNorm in train mode,
            data that reshuffles, parameters outside the layout).
        """
        at_centre = theta is None
        theta = self.theta0 if theta is None else theta
        a, b = self.evaluate(theta).loss, self.evaluate(theta).loss
        if not math.isfinite(a):
            raise WeightspaceError(
                f"theta: the loss is {a} there; check the point, the data and the model"
            )
        if abs(a - b) > rtol * max(abs(a), 1e-12):
            raise WeightspaceError(
                f"objective is not deterministic: two evaluations gave {a!r} and {b!r} "
                f"(mode={self.mode!r}); likely dropout or BatchNorm in train mode, or data "
                "that reshuffles; use mode='eval' and fixed data"
            )
        if at_centre:
            own = self.model_loss()
            if abs(a - own) > rtol * max(abs(own), 1e-12) + 1e-12:
                raise WeightspaceError(
                    f"objective at the model's parameters is {a!r} but the model's own loss is "
                    f"{own!r}; likely parameters shared or created outside named_parameters(), "
                    "or a forward that depends on state weightspace does not see"
                )
        return a

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
        }
