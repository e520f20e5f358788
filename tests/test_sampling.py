"""Jump and retrain: start points against an independent filter normalisation, the runs and
their metadata, resume, the CLI's joint projections and its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import weightspace as ws
from weightspace.cli import main
from weightspace.errors import WeightspaceError
from weightspace.sampling import MANIFEST, jump_and_retrain, run_name
from weightspace.train import StartPoint, train

SIZES = (0.5, 1.0)
SEEDS = (0, 3)


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    path = tmp_path_factory.mktemp("origin") / "sgd"
    train(ws.zoo.problem("digits-mlp"), path, lr=0.5, momentum=0.5, steps=20, every=5)
    return path


@pytest.fixture(scope="module")
def samples(origin, tmp_path_factory):
    out = tmp_path_factory.mktemp("samples") / "jumps"
    problem = ws.zoo.problem("digits-mlp", seed=9)  # weights are overwritten by every jump
    return jump_and_retrain(problem, origin, out, sizes=SIZES, seeds=SEEDS, retrain_steps=10)


def filter_normalised(theta: np.ndarray, layout: ws.ParamLayout, seed: int) -> np.ndarray:
    """Li et al.'s direction, written out: Gaussian, each row of a weight matrix rescaled to
    the norm of that row of ``theta``, biases zero."""
    raw = torch.randn(
        (1, layout.numel), generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )[0].numpy()
    d = np.zeros_like(theta)
    for sl, shape in zip(layout.slices, layout.shapes):
        if len(shape) < 2:
            continue
        r = raw[sl].reshape(shape[0], -1)
        t = theta[sl].reshape(shape[0], -1)
        scale = np.linalg.norm(t, axis=1) / (np.linalg.norm(r, axis=1) + 1e-10)
        d[sl] = (r * scale[:, None]).ravel()
    return d


def test_start_point_is_the_optimum_plus_a_filter_normalised_jump(origin, samples):
    parent = ws.Trajectory.load(origin)
    theta = parent.snapshot(-1).astype(np.float64)
    layout = parent.layout
    for r, run in enumerate(samples.runs):
        size, seed = samples.run_sizes[r], int(samples.run_seeds[r])
        start = ws.Trajectory.load(run).snapshot(0).astype(np.float64)
        d = filter_normalised(theta, layout, seed)
        expected = (theta + size * d).astype(np.float32)
        np.testing.assert_allclose(start, expected, rtol=1e-6, atol=1e-7)
        jump = (start - theta) / size
        for sl, shape in zip(layout.slices, layout.shapes):
            if len(shape) == 1:  # biases are not moved at all
                np.testing.assert_array_equal(start[sl], theta[sl])
            else:  # every filter of d has the norm of theta's filter
                rows = np.linalg.norm(jump[sl].reshape(shape[0], -1), axis=1)
                ref = np.linalg.norm(theta[sl].reshape(shape[0], -1), axis=1)
                np.testing.assert_allclose(rows, ref, rtol=1e-4)


def test_jump_length_is_linear_in_the_size(origin, samples):
    parent = ws.Trajectory.load(origin)
    theta = parent.snapshot(-1).astype(np.float64)
    # a filter-normalised direction has the norm of theta's weight matrices (biases excluded)
    weights = np.concatenate(
        [theta[sl] for sl, f in zip(parent.layout.slices, parent.layout.is_filter) if f]
    )
    np.testing.assert_allclose(samples.direction_norms, np.linalg.norm(weights), rtol=1e-9)
    np.testing.assert_allclose(samples.distances, samples.run_sizes * samples.direction_norms)
    for seed in SEEDS:
        a, b = (
            ws.Trajectory.load(samples.out / run_name(s, seed)).snapshot(0).astype(np.float64)
            for s in SIZES
        )
        ratio = np.linalg.norm(b - theta) / np.linalg.norm(a - theta)
        assert ratio == pytest.approx(SIZES[1] / SIZES[0], rel=1e-5)
        # same seed, same ray: the two start points are collinear with theta
        cos = (a - theta) @ (b - theta) / np.linalg.norm(a - theta) / np.linalg.norm(b - theta)
        assert cos == pytest.approx(1.0, abs=1e-9)


def test_runs_load_with_their_steps_settings_and_losses(origin, samples):
    parent = ws.Trajectory.load(origin)
    assert samples.origin_step == 20 and samples.projection_runs()[0] == origin
    assert [p.name for p in samples.runs] == [run_name(s, k) for s in SIZES for k in SEEDS]
    assert samples.skipped == (False,) * 4
    objective = ws.Objective(ws.zoo.problem("digits-mlp"))
    assert samples.origin_loss == pytest.approx(float(objective(parent.theta(-1))), rel=1e-6)
    for r, traj in enumerate(samples.trajectories()[1:]):
        assert traj.steps.tolist() == [20, 25, 30]
        jump = traj.metadata["jump"]
        assert jump["origin_step"] == 20 and jump["seed"] == samples.run_seeds[r]
        assert jump["size"] == samples.run_sizes[r] and jump["normalization"] == "filter"
        assert ws.Trajectory.load(jump["origin"]).path.resolve() == origin.resolve()
        # the original run's optimizer settings, and the run's seed as the data order
        assert (traj.metadata["lr"], traj.metadata["momentum"]) == (0.5, 0.5)
        assert traj.metadata["data_seed"] == samples.run_seeds[r]
        final = float(objective(traj.theta(-1)))
        assert samples.final_losses[r] == pytest.approx(final, rel=1e-6)
        assert samples.start_losses[r] == pytest.approx(float(objective(traj.theta(0))), rel=1e-6)
    # retraining from the biggest jumps brings the loss back down
    assert np.all(samples.final_losses[2:] < samples.start_losses[2:])


def test_rerun_redoes_only_incomplete_runs(origin, tmp_path):
    def sample(**kw):
        problem = ws.zoo.problem("digits-mlp")
        return jump_and_retrain(
            problem, origin, tmp_path / "j", sizes=(0.5,), seeds=(0, 1), retrain_steps=10, **kw
        )

    first = sample()
    keep = [np.array(t.snapshot(-1)) for t in first.trajectories()[1:]]
    untouched = first.runs[0] / "snapshots" / "000000030.npy"
    stamp = untouched.stat().st_mtime_ns
    (first.runs[1] / "snapshots" / "000000030.npy").unlink()  # a crash before the last write
    second = sample()
    assert second.skipped == (True, False)
    assert untouched.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(ws.Trajectory.load(second.runs[1]).snapshot(-1), keep[1])
    np.testing.assert_allclose(second.final_losses, first.final_losses, rtol=1e-12)
    # a crash after training, before the run is counted: redone too
    manifest = json.loads((tmp_path / "j" / MANIFEST).read_text())
    del manifest["runs"][run_name(0.5, 0)]
    (tmp_path / "j" / MANIFEST).write_text(json.dumps(manifest))
    assert sample().skipped == (False, True)
    assert sample().skipped == (True, True)
    with pytest.raises(WeightspaceError, match=r"^out: .* retrain_steps=10, got 20;"):
        jump_and_retrain(
            ws.zoo.problem("digits-mlp"),
            origin,
            tmp_path / "j",
            sizes=(0.5,),
            seeds=(0, 1),
            retrain_steps=20,
        )


def test_new_sizes_and_seeds_extend_a_sampling_directory(origin, tmp_path):
    def sample(sizes, seeds, **kw):
        problem = ws.zoo.problem("digits-mlp")
        out = tmp_path / "j"
        return jump_and_retrain(problem, origin, out, sizes=sizes, seeds=seeds, **kw)

    first = sample((0.5,), (0,), retrain_steps=10)
    more = sample((0.5, 1.0), (1, 0), retrain_steps=10)
    assert more.skipped == (False, True, False, False)  # only (0.5, 0) existed
    np.testing.assert_allclose(more.final_losses[1], first.final_losses[0], rtol=1e-12)
    settings = json.loads((tmp_path / "j" / MANIFEST).read_text())["settings"]
    assert settings["sizes"] == [0.5, 1.0] and settings["seeds"] == [0, 1]
    assert sample((1.0,), (1,), retrain_steps=10).skipped == (True,)
    with pytest.raises(WeightspaceError, match=r"retrain_steps=10, got 20; .*sizes and seeds"):
        sample((0.5,), (0,), retrain_steps=20)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sizes": (0.5, 0.0)}, r"^sizes: expected one or more positive"),
        ({"sizes": (0.5, float("nan"))}, r"^sizes: expected one or more positive"),
        ({"sizes": (0.5, 0.5)}, r"^sizes: expected distinct"),
        ({"seeds": (0, -1)}, r"^seeds: expected one or more non-negative"),
        ({"seeds": (1.5,)}, r"^seeds: expected one or more non-negative"),
        ({"seeds": (2, 2)}, r"^seeds: expected distinct"),
        ({"retrain_steps": 0}, r"^retrain_steps: expected a positive integer"),
        ({"retrain_steps": 7}, r"^every: the origin step 20 and retrain_steps 7"),
        ({"at": 7}, r"^at: step 7 is not in run"),
        ({"lr": -1.0}, r"^lr: expected a finite positive number"),
        ({"problem": "digits-cnn"}, r"^problem 'digits-cnn'"),
        ({"run": "missing"}, r"^run directory .*missing.* does not exist"),
    ],
)
def test_bad_input_fails_before_training(origin, tmp_path, kwargs, match):
    problem = ws.zoo.problem(kwargs.pop("problem", "digits-mlp"))
    run = tmp_path / kwargs.pop("run") if "run" in kwargs else origin
    with pytest.raises(WeightspaceError, match=match) as err:
        jump_and_retrain(problem, run, tmp_path / "out", **kwargs)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_a_run_without_optimizer_settings_needs_them(tmp_path):
    problem = ws.zoo.problem("digits-mlp")
    with ws.Recorder(problem.model, tmp_path / "plain") as rec:
        rec.record(0)
    with pytest.raises(WeightspaceError, match=r"^lr: run .* does not record its lr; pass lr="):
        jump_and_retrain(problem, tmp_path / "plain", tmp_path / "out", retrain_steps=1)
    samples = jump_and_retrain(
        problem,
        tmp_path / "plain",
        tmp_path / "out",
        sizes=(1.0,),
        seeds=(0,),
        retrain_steps=1,
        lr=0.1,
    )
    traj = ws.Trajectory.load(samples.runs[0])
    assert traj.steps.tolist() == [0, 1] and traj.metadata["optimizer"] == "sgd"


def test_cli_samples_and_projects_jointly(origin, tmp_path, capsys):
    out = tmp_path / "cli"
    args = [
        "sample",
        "--problem",
        "digits-mlp",
        str(origin),
        "--steps-sizes",
        "0.25,1",
        "--seeds",
        "4",
        "--retrain-steps",
        "10",
        "--lr",
        "0.2",
        "-o",
        str(out),
        "--no-progress",
    ]
    assert main([*args, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    summary = payload["summary"]
    assert summary["trained"] == 2 and [r["size"] for r in summary["runs"]] == [0.25, 1.0]
    runs = [origin, out / run_name(0.25, 4), out / run_name(1.0, 4)]
    for method in ("pca", "phate"):
        proj = ws.load(payload["artifacts"][f"projection_{method}"], "projection")
        assert proj.method == method
        assert proj.labels == ["sgd", "jump 0.25 seed 4", "jump 1 seed 4"]
        for r, run in enumerate(runs):
            traj = ws.Trajectory.load(run)
            np.testing.assert_array_equal(proj.runs[r].steps, traj.steps)
            assert proj.runs[r].coords.shape[0] == len(traj)
    assert ws.Trajectory.load(runs[1]).metadata["lr"] == 0.2
    assert main([*args, "--seeds", "0,x"]) == 2
    err = capsys.readouterr()
    assert err.out == ""
    assert err.err.count("\n") == 1 and "--seeds" in err.err


@pytest.mark.parametrize(
    ("flags", "needle", "code"),
    [
        (["--step-sizes", "0.5,-1"], "--step-sizes", 2),
        (["--steps-sizes", "a,b"], "--step-sizes/--steps-sizes", 2),
        (["--seeds", "1,1"], "--seeds", 2),
        (["--retrain-steps", "0"], "--retrain-steps", 2),
        (["RUN:13"], "step 13 is not in run", 1),
        (["--every", "3"], "--every", 1),
        (["--problem", "digits-cnn"], "--problem", 1),
    ],
)
def test_cli_errors_are_one_line_and_name_the_flag(origin, tmp_path, capsys, flags, needle, code):
    run = str(origin)
    if flags[0] == "RUN:13":
        run, flags = f"{origin}:13", []
    argv = ["sample", "--problem", "digits-mlp", run, "-o", str(tmp_path / "o"), *flags]
    try:
        got = main(argv)
    except SystemExit as e:  # argparse's own errors
        got = e.code
    err = capsys.readouterr().err
    assert got == code and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "o").exists()


def test_start_and_init_from_are_exclusive(origin, tmp_path):
    problem = ws.zoo.problem("digits-mlp")
    theta = ws.ParamLayout.from_module(problem.model).flatten(problem.model)
    with pytest.raises(WeightspaceError, match="^start: give start or init_from"):
        train(problem, tmp_path / "r", start=StartPoint(theta), init_from=(origin, None))
    with pytest.raises(WeightspaceError, match=r"^start: expected a flat vector"):
        train(problem, tmp_path / "r", start=StartPoint(theta[:-1]))
    assert not (tmp_path / "r").exists()
