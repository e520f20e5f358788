"""The point-evaluation engine: many parameter vectors in, per-batch losses out, fast.

Shared by the loss landscapes (:mod:`weightspace.landscape`) and anything else that
evaluates an :class:`~weightspace.Objective` at many points. Data are staged once, the loop
runs under ``torch.inference_mode`` and writes every point into one preallocated flat buffer,
results stay on the device until a checkpoint (no host sync per point). Options
(:class:`EngineOptions`): a ``torch.compile``d point function, chosen by ``compile="auto"``
only when the expected eager time repays the compilation; bf16 autocast; channels-last
inputs; several points per pass through ``torch.func.vmap``. Each choice is recorded with its
measured deviation from the plain evaluation. Points are sharded across ``torchrun`` ranks and
checkpointed per rank (:mod:`weightspace.parallel`). Compiled engines are kept per objective
by this module, for the life of the objective.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from .._batches import logits_of, weighted_mean
from ..errors import WeightspaceError
from ..objective import Objective

logger = logging.getLogger(__name__)

CompileMode = Literal["auto", "on", "off"]
Precision = Literal["full", "bf16"]
StateFn = Callable[[np.ndarray, torch.Tensor], torch.Tensor]
COMPILE_COST_S = 30.0  # cold torch.compile of a small CNN on a 2-core CPU: 10-30 s measured
COMPILE_TOL = 1e-5  # compiled values must match plain eager within this (relative to max(1,|L|))
# compiled engines by objective (weakly: they go with it), then by (dtype, options)
_COMPILED: weakref.WeakKeyDictionary[Objective, dict[tuple, PointEngine]] = (
    weakref.WeakKeyDictionary()
)
# eager seconds spent per objective in this process (the compile decision's rent so far)
_EAGER_SPENT: weakref.WeakKeyDictionary[Objective, float] = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------------------- options
@dataclass(frozen=True)
class EngineOptions:
    """How points are evaluated, never what they are.

    Attributes:
        compile: ``"auto"`` (compile when the expected eager time repays the compilation,
            when the eager time already spent on the objective in this process reaches the
            compile cost, or when a compiled engine for it exists), ``"on"`` or ``"off"``.
        precision: ``"full"`` or ``"bf16"`` (autocast; recorded with its deviation).
        channels_last: channels-last image inputs; None: on for image batches on the CPU.
        points_per_pass: grid points per forward pass (``torch.func.vmap``).
        workers: points evaluated at once on the CPU, each by its own single-threaded
            worker on a copy of the model; None (auto): as many as torch has threads, when
            measuring on the probe points shows they are faster (small models); 1: one point
            after the other, each with all of torch's threads.
        checkpoint_every: write the partial results after this many points (None: by time).
        checkpoint_seconds: ... or after this many seconds, whichever comes first.
        keep_checkpoint: leave the partial files when the work is done (default: removed).
        progress: show a progress bar.

    Example:
        >>> EngineOptions(compile="off", points_per_pass=4).points_per_pass
        4
        >>> EngineOptions.of({"complie": "off"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        weightspace.errors.WeightspaceError: engine: unknown option 'complie'; the options are ...
    """

    compile: CompileMode = "auto"
    precision: Precision = "full"
    channels_last: bool | None = None
    points_per_pass: int = 1
    workers: int | None = None
    checkpoint_every: int | None = None
    checkpoint_seconds: float = 60.0
    keep_checkpoint: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        if self.compile not in ("auto", "on", "off"):
            raise WeightspaceError(f"compile: expected 'auto', 'on' or 'off', got {self.compile!r}")
        if self.precision not in ("full", "bf16"):
            raise WeightspaceError(f"precision: expected 'full' or 'bf16', got {self.precision!r}")
        if self.channels_last not in (None, True, False):
            raise WeightspaceError(
                f"channels_last: expected None (auto), True or False, got {self.channels_last!r}"
            )
        for name in ("points_per_pass", "workers", "checkpoint_every"):
            value = getattr(self, name)
            if value is None and name != "points_per_pass":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise WeightspaceError(f"{name}: expected a positive integer, got {value!r}")
        if not (isinstance(self.checkpoint_seconds, (int, float)) and self.checkpoint_seconds > 0):
            raise WeightspaceError(
                f"checkpoint_seconds: expected a positive number, got {self.checkpoint_seconds!r}"
            )

    @classmethod
    def of(cls, engine: EngineOptions | Mapping[str, Any] | None) -> EngineOptions:
        """``engine`` as options: None gives the defaults, a mapping is checked by name.

        Raises:
            WeightspaceError: an unknown option (naming it and the valid ones) or a bad value.
        """
        if engine is None:
            return cls()
        if isinstance(engine, cls):
            return engine
        if not isinstance(engine, Mapping):
            raise WeightspaceError(
                f"engine: expected EngineOptions or a mapping of options, got "
                f"{type(engine).__name__}"
            )
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in engine if k not in names]
        if unknown:
            raise WeightspaceError(
                f"engine: unknown option {unknown[0]!r}; the options are {', '.join(names)}"
            )
        return cls(**engine)

    def replace(self, **changes: Any) -> EngineOptions:
        """A copy with ``changes`` (checked like the constructor)."""
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------- engine
class PointEngine:
    """Evaluates points ``thetas: (m, n)`` to per-batch losses and correct counts.

    Built from the objective's public pieces (``forward_loss``, ``batch``), so its values are
    those of :meth:`Objective.evaluate`. ``__call__`` returns ``(m, F)`` float64 on the
    objective's device, ``F = B`` (losses) or ``2B`` (losses, then correct counts). With
    ``states: (m, b)`` (flat buffer vectors in the objective's :attr:`buffer_layout`) each
    point reads its own buffers instead of the objective's.
    """

    def __init__(
        self,
        objective: Objective,
        dtype: torch.dtype,
        *,
        precision: Precision = "full",
        channels_last: bool = False,
        points_per_pass: int = 1,
        compiled: bool = False,
    ) -> None:
        self.obj, self.dtype = objective, dtype
        self.precision, self.channels_last = precision, channels_last
        self.points_per_pass, self.compiled = points_per_pass, compiled
        self.classification = objective.metadata["task"] == "classification"
        self.n_batches = objective.n_batches
        self.n_fields = self.n_batches * (2 if self.classification else 1)
        batches = [objective.batch(b, dtype) for b in range(self.n_batches)]
        if channels_last:
            batches = [(_channels_last(x), y) for x, y in batches]
        self.batches = batches
        fns: dict[bool, Callable] = {}
        for with_state in (False, True):
            fn: Callable = self._point_with_state if with_state else self._point
            if points_per_pass > 1:
                dims = (0, 0, None, None) if with_state else (0, None, None)
                fn = torch.func.vmap(fn, in_dims=dims)
            fns[with_state] = torch.compile(fn, dynamic=False) if compiled else fn
        self.fn, self.fn_state = fns[False], fns[True]

    def _point_with_state(
        self, theta: torch.Tensor, state: torch.Tensor, inputs: Any, targets: Any
    ) -> torch.Tensor:
        buffers = self.obj.buffer_layout.unflatten(state, dtype=theta.dtype)
        return self._point(theta, inputs, targets, buffers)

    def _point(
        self,
        theta: torch.Tensor,
        inputs: Any,
        targets: Any,
        buffers: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if self.precision == "bf16":
            with torch.autocast(device_type=theta.device.type, dtype=torch.bfloat16):
                out, loss = self.obj.forward_loss(theta, inputs, targets, buffers=buffers)
        else:
            out, loss = self.obj.forward_loss(theta, inputs, targets, buffers=buffers)
        loss = loss.reshape(()).to(torch.float64)
        if not self.classification:
            return loss.reshape(1)
        correct = (logits_of(out).argmax(-1) == targets).sum().to(torch.float64)
        return torch.stack([loss, correct])

    def __call__(self, thetas: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        outs = []
        with torch.inference_mode():
            for inputs, targets in self.batches:
                if states is not None:
                    if self.points_per_pass > 1:
                        outs.append(self.fn_state(thetas, states, inputs, targets))
                    else:
                        outs.append(
                            torch.stack(
                                [
                                    self.fn_state(t, s, inputs, targets)
                                    for t, s in zip(thetas, states)
                                ]
                            )
                        )
                elif self.points_per_pass > 1:
                    outs.append(self.fn(thetas, inputs, targets))
                else:
                    outs.append(torch.stack([self.fn(t, inputs, targets) for t in thetas]))
            # (m, k, B) -> (m, k*B): the B losses, then the B correct counts
            return torch.stack(outs, dim=2).reshape(thetas.shape[0], self.n_fields).clone()

    def describe(self) -> dict[str, Any]:
        """The options (also the keyword arguments that build the same engine)."""
        return {
            "precision": self.precision,
            "channels_last": self.channels_last,
            "points_per_pass": self.points_per_pass,
            "compiled": self.compiled,
        }


def _channels_last(x: Any) -> Any:
    """Image batches ``(N, C, H, W)`` with channels-last strides (also for ``C = 1``, where
    ``Tensor.contiguous`` keeps the NCHW strides and convolutions stay NCHW)."""
    if isinstance(x, torch.Tensor) and x.ndim == 4:
        _, c, h, w = x.shape
        out = torch.empty_strided(x.shape, (h * w * c, 1, w * c, c), dtype=x.dtype, device=x.device)
        return out.copy_(x)
    return x


def resolve_channels_last(objective: Objective, channels_last: bool | None) -> bool:
    """``None`` (auto): channels-last on the CPU when the inputs are image batches."""
    if channels_last is not None:
        return bool(channels_last)
    inputs = objective.batch(0, torch.float32)[0] if objective.n_batches else None
    images = isinstance(inputs, torch.Tensor) and inputs.ndim == 4
    return images and objective.device.type == "cpu"


def aggregate(
    data: np.ndarray, weights: np.ndarray, n_samples: int, classification: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-point mean loss, standard error over batches and accuracy from engine rows.

    Args:
        data: ``(P, F)`` rows of :class:`PointEngine`; weights: ``(B,)`` = ``N_b / N``.

    Returns:
        ``values (P,)``, ``stderr (P,)``, ``accuracy (P,)`` or None; as
        :meth:`Objective.evaluate` computes them (:func:`weighted_mean`).
    """
    b = len(weights)
    values, stderr = weighted_mean(data[:, :b], weights)
    acc = data[:, b:].sum(axis=1) / n_samples if classification else None
    values = np.where(np.isfinite(values), values, np.nan)
    return values, stderr, acc


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_plain(
    plain: PointEngine, probes: torch.Tensor, states: torch.Tensor | None
) -> tuple[torch.Tensor, float]:
    """The plain engine's rows for the probes, and the fastest probe's time (robust to load)."""
    rows, times = [], []
    for k in range(len(probes)):
        t0 = time.perf_counter()
        rows.append(plain(probes[k : k + 1], None if states is None else states[k : k + 1]))
        _sync(probes.device)
        times.append(time.perf_counter() - t0)
    return torch.cat(rows), min(times)


def note_eager(objective: Objective, seconds: float) -> None:
    """Add ``seconds`` of eager evaluation to what this process has spent on ``objective``."""
    _EAGER_SPENT[objective] = _EAGER_SPENT.get(objective, 0.0) + seconds


def _decide_compile(
    opts: EngineOptions, cached: bool, n_todo: int, t_point: float, spent: float = 0.0
) -> tuple[bool, str]:
    """Compile (``"auto"``) when a compiled engine exists, when the eager time already spent
    on the objective in this process reaches the compile cost (the ski-rental rule: then at
    most twice the best choice in hindsight, however many calls follow), or when this call
    alone is expected to take twice the compile cost."""
    if opts.compile != "auto":
        return opts.compile == "on", f"compile={opts.compile!r}"
    if cached:
        return True, "a compiled engine for this objective exists in this process"
    if spent >= COMPILE_COST_S:
        return True, (
            f"{spent:.1f} s spent evaluating this objective eagerly in this process >= "
            f"compile cost {COMPILE_COST_S} s"
        )
    expected = n_todo * t_point
    use = expected > 2 * COMPILE_COST_S
    sign = ">" if use else "<="
    return use, f"eager estimate {expected:.1f} s {sign} 2 x compile cost {COMPILE_COST_S} s"


def build_engine(
    objective: Objective,
    dtype: torch.dtype,
    probes: torch.Tensor,
    n_todo: int,
    opts: EngineOptions,
    probe_states: torch.Tensor | None = None,
) -> tuple[PointEngine, dict[str, Any], torch.Tensor]:
    """The engine for the loop, each option's measured deviation, and its probe rows.

    The plain engine evaluates the probe points (timing them for the compile decision);
    an engine with options evaluates them again and is compared with it. Returns the
    chosen engine, facts for the metadata and the chosen engine's rows for the probes.
    ``probe_states``: the probes' buffers, when the points have their own.
    """
    auto_cl = opts.channels_last is None
    options = {
        "precision": opts.precision,
        "channels_last": resolve_channels_last(objective, opts.channels_last),
        "points_per_pass": opts.points_per_pass,
    }
    plain = PointEngine(objective, dtype)
    ref, t_point = _time_plain(plain, probes, probe_states)
    info: dict[str, Any] = {"eager_seconds_per_point": t_point, "compile_requested": opts.compile}
    key = (dtype, *options.values())
    cache = _COMPILED.setdefault(objective, {})
    use, why = _decide_compile(
        opts, key in cache, n_todo, t_point, spent=_EAGER_SPENT.get(objective, 0.0)
    )
    engine, out, dev, seconds = plain, ref, 0.0, 0.0
    fast = options["precision"] != "full" or options["channels_last"]
    if use or fast or options["points_per_pass"] > 1:
        engine = cache.get(key) if use else None
        fresh = engine is None
        t0 = time.perf_counter()
        try:
            engine = engine or PointEngine(objective, dtype, compiled=use, **options)
            out = engine(probes, probe_states)
        except Exception as e:  # a backend without a compiler: fall back, say why
            if not use:
                raise
            first = (str(e).strip().splitlines() or [""])[0]  # one line for the metadata
            logger.warning("torch.compile failed (%s); evaluating eagerly", first)
            why, use = f"torch.compile failed: {type(e).__name__}: {first}"[:200], False
            engine = PointEngine(objective, dtype, **options)
            out = engine(probes, probe_states)
        seconds = time.perf_counter() - t0 if use and fresh else 0.0
        dev = _deviation(ref, out, plain)
        if dev > COMPILE_TOL and (use or (auto_cl and options["channels_last"])):
            logger.warning("fast path deviates by %.2e from plain eager; not using it", dev)
            why, use = f"fast path deviation {dev:.1e} > {COMPILE_TOL}: not used", False
            options["channels_last"] = options["channels_last"] and not auto_cl
            engine = PointEngine(objective, dtype, **options)
            out = engine(probes, probe_states)
            dev = _deviation(ref, out, plain)
        if use:
            cache[key] = engine
    info.update(engine.describe(), compile_reason=why, channels_last_auto=auto_cl)
    info.update(compile_seconds=seconds, deviation_vs_plain=dev)
    return engine, info, out


def _deviation(ref: torch.Tensor, out: torch.Tensor, engine: PointEngine) -> float:
    """Largest ``|L - L_plain| / max(1, |L_plain|)`` of the mean loss over the probe points."""
    w = engine.obj.batch_weights.to(ref.device)
    b = engine.n_batches
    a, o = ref[:, :b] @ w, out[:, :b] @ w
    return float(((a - o).abs() / a.abs().clamp_min(1.0)).max())
