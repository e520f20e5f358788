"""Loss and accuracy along runs, on the data the objective holds (what ``weightspace
curves`` computes): the learning curves of Li et al.'s plots, for the test data too."""

from __future__ import annotations

import numpy as np

from .._progress import progress_bar
from ..landscape import Curve, Curves, EngineOptions, snapshots_evaluation
from ..objective import Objective
from ._runs import At, RunLike, as_runs, check_layouts, select_indices

__all__ = ["curves_of_runs"]


def curves_of_runs(
    objective: Objective,
    runs: RunLike | list[RunLike],
    *,
    at: At = "all",
    engine: EngineOptions | dict | None = None,
    metadata: dict | None = None,
    progress: bool = False,
) -> Curves:
    """The mean loss (and accuracy) of the objective at the snapshots of each run.

    Each snapshot is evaluated with its own recorded buffers (BatchNorm statistics), over
    the whole of the objective's data: build the objective on the test data
    (``Objective(problem, data="test")``) for test curves. Unlike the minibatch loss a
    recorder stores while training, these are full-data values at the recorded weights.

    Args:
        objective: the loss and its data.
        runs: run directories or Trajectories (each once; the objective's model's layout).
        at: which snapshots: ``"all"`` (default), ``"final"``, ``"every:K"``, steps.
        engine: how to evaluate (:class:`~weightspace.EngineOptions`).
        metadata: more to record in the result's metadata.
        progress: a progress bar over runs.

    Returns:
        :class:`~weightspace.landscape.Curves`, one :class:`~weightspace.landscape.Curve`
        per run.

    Example::

        test = ws.Objective(ws.zoo.problem("digits-mlp"), data="test")
        curves = ws.curves_of_runs(test, ["runs/sgd", "runs/adam"])
        curves.runs[0].loss[-1]
    """
    trajs = as_runs(runs)
    check_layouts(objective, trajs)
    engine = EngineOptions.of(engine)
    out = []
    for traj in progress_bar(trajs, desc="curves", unit="run", enabled=progress):
        idx = select_indices(traj, at)
        loss, stderr, acc = snapshots_evaluation(objective, traj, idx, engine=engine)
        steps = np.asarray(traj.steps)[idx]
        out.append(Curve(traj.path.name, str(traj.path), steps, loss, stderr, acc))
    at_record = at if isinstance(at, (str, int)) else list(at)
    return Curves(
        tuple(out), {"objective": objective.metadata, "at": at_record, **(metadata or {})}
    )
