"""``weightspace spectrum``: Hessian eigenvalues, trace and density of a run's checkpoints."""

from __future__ import annotations

import argparse

from . import Output, _options, add_command, show_progress

__all__ = ["add_parser", "run"]

EXAMPLES = """
  weightspace spectrum --problem digits-cnn runs/sgd --at final --top-k 5 -o out/spec
  weightspace spectrum --problem digits-cnn runs/sgd --at every:10 --trace --density -o out/along
  weightspace spectrum --problem digits-cnn runs/sgd --between runs/adam --points 11 -o out/line
  weightspace spectrum --problem digits-cnn runs/sgd:500 --include 'head.*' -o out/head
"""


def add_parser(sub) -> None:
    p = add_command(
        sub,
        "spectrum",
        "Hessian eigenvalues, eigenvectors, trace and spectral density at checkpoints",
        EXAMPLES,
    )
    p.add_argument(
        "run", type=_options.run_point, metavar="RUN[:STEP]", help="a run (STEP: --at STEP)"
    )
    p.add_argument(
        "--at",
        help="which snapshots: final (default), all, every:K (every K-th and the last), a "
        "recorded STEP or STEP,STEP,...",
    )
    p.add_argument("-o", "--out", required=True, help="result path (writes OUT.npz + OUT.json)")
    _options.add_overwrite(p)
    p.add_argument("--top-k", type=int, default=5, help="eigenpairs per point (0: none)")
    p.add_argument("--which", choices=("largest", "smallest", "both"), default="largest")
    p.add_argument("--tol", type=float, help="eigenpair residual tolerance (relative)")
    p.add_argument("--block-size", type=_options.positive_int, default=1, help="Lanczos block")
    p.add_argument("--trace", action="store_true", help="Hutchinson trace estimate")
    p.add_argument("--trace-probes", type=_options.positive_int, default=100)
    p.add_argument("--density", action="store_true", help="SLQ spectral density")
    p.add_argument("--probes", type=_options.positive_int, default=10, help="SLQ probes")
    p.add_argument("--lanczos-steps", type=_options.positive_int, default=80, help="SLQ steps")
    p.add_argument("--sigma", type=float, help="SLQ Gaussian width (default 1%% of the range)")
    p.add_argument("--seed", type=_options.seed, default=0, help="seed of every probe")
    p.add_argument(
        "--between",
        type=_options.run_point,
        metavar="RUN2[:STEP]",
        help="instead: points on the line from RUN (at --at) to RUN2 (default its last step)",
    )
    p.add_argument(
        "--points", type=_options.positive_int, default=11, help="points on the --between line"
    )
    p.add_argument("--include", help="only parameters matching this glob (e.g. 'head.*')")
    p.add_argument(
        "--float64",
        dest="dtype",
        action=_options.Deprecated,
        new="--dtype float64",
        value="float64",
        help=argparse.SUPPRESS,
    )
    p.add_argument(
        "--hvp", choices=("auto", "forward", "double-backward"), default="auto", help="HVP method"
    )
    p.add_argument(
        "--split",
        default="auto",
        metavar="auto|none|GLOB",
        help="split a small block of parameters off the Hessian products (exact; cheaper "
        "products after one product per coordinate): auto (the first layer, when it pays), "
        "none, or the parameters matching GLOB (e.g. 'features.0.*')",
    )
    _options.add_objective(p)
    p.set_defaults(
        func=run,
        flag_names={
            "n_probes": "--probes",
            "n_steps": "--lanczos-steps",
            "trace_probes": "--trace-probes",
            "method": "--hvp",
            "between": "--between",
            "top_k": "--top-k",
        },
    )


def run(args: argparse.Namespace) -> Output:
    import numpy as np

    from ..errors import WeightspaceError
    from ..results import save
    from ..workflows import spectrum_of_run

    run_dir, step = args.run
    if step is not None and args.at is not None:
        raise WeightspaceError("at: give RUN:STEP or --at, not both")
    at = args.at or (str(step) if step is not None else "final")
    base = _options.result_base(args)
    obj = _options.objective(args)
    result = spectrum_of_run(
        obj,
        run_dir,
        at=at,
        between=None if args.between is None else _options.point_arg(args.between),
        points=args.points,
        progress=show_progress(args),
        top_k=args.top_k,
        which=args.which,
        tol=args.tol,
        block_size=args.block_size,
        trace_probes=args.trace_probes if args.trace else 0,
        density=args.density,
        n_probes=args.probes,
        n_steps=args.lanczos_steps,
        sigma=args.sigma,
        seed=args.seed,
        dtype=_options.compute_dtype(args),
        include=args.include,
        method=args.hvp,
        split=None if args.split == "none" else args.split,
    )
    result = _with_provenance(result, args, obj)
    npz = save(result, base)
    summary = {
        "axis": result.axis,
        "positions": result.positions.tolist(),
        "loss": result.loss.tolist(),
        "eigenvalues": result.eigenvalues.tolist(),
        "trace": None if np.isnan(result.trace).all() else result.trace.tolist(),
        "sigma": result.metadata.get("sigma"),
        "lambda_max_lr": None if result.lambda_max_lr is None else result.lambda_max_lr.tolist(),
        "stability_threshold": result.stability_threshold,
        "stability_rule": result.metadata.get("stability_rule"),
        "n_matvecs": result.n_matvecs,
    }
    lines = [*_lines(result), f"wrote {npz}"]
    return Output({"spectrum": str(npz)}, summary, str(npz.with_suffix(".json")), lines)


def _with_provenance(result, args: argparse.Namespace, obj):
    import dataclasses

    meta = {**result.metadata, **_options.problem_record(args, obj), "n_matvecs": result.n_matvecs}
    return dataclasses.replace(result, metadata=meta)


def _lines(result) -> list[str]:
    import numpy as np

    lines = []
    for i, pos in enumerate(result.positions):
        parts = [f"{result.axis} {pos:g}", f"loss {result.loss[i]:.4g}"]
        if result.eigenvalues.shape[1]:
            parts.append("λ " + " ".join(f"{v:.4g}" for v in result.eigenvalues[i]))
        if not np.isnan(result.trace[i]):
            parts.append(f"trace {result.trace[i]:.4g} ± {result.trace_stderr[i]:.2g}")
        if result.lambda_max_lr is not None:
            edge = result.stability_threshold
            vs = f" (vs {edge:g})" if edge is not None else " (no classical threshold)"
            parts.append(f"λmax·lr {result.lambda_max_lr[i]:.3g}{vs}")
        lines.append("  ".join(parts))
    return lines
