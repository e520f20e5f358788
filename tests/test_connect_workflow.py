"""Between two solutions (weightspace.connect_runs, ``weightspace connect``): on the embedded
digits MLP, two short runs from different initialisations; the barriers in the result equal
direct evaluations of the loss at the path points (plain PyTorch, in this file), the result
survives save/load, the command writes it and answers --json, errors are one line, and the
report draws its section."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import weightspace as ws
from weightspace.cli import main
from weightspace.render.build import build_report
from weightspace.train import train

TS = np.linspace(0, 1, 5)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("connect")
    for seed in (0, 1):
        train(ws.zoo.problem("digits-mlp", seed=seed), root / f"r{seed}", steps=60, lr=0.1,
              momentum=0.9, every=30)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def conn(runs):
    problem = ws.zoo.problem("digits-mlp")
    return ws.connect_runs(problem, runs / "r0", runs / "r1", steps=40, ts=TS, grid=(5, 4))


# ----------------------------------------------------------------------------- independent code
def _mlp_params(theta: torch.Tensor) -> dict[str, torch.Tensor]:
    """The digits MLP 64-40-10 (``0.weight, 0.bias, 2.weight, 2.bias``) from a flat vector."""
    shapes = {"0.weight": (40, 64), "0.bias": (40,), "2.weight": (10, 40), "2.bias": (10,)}
    out, i = {}, 0
    for name, shape in shapes.items():
        k = math.prod(shape)
        out[name] = theta[i : i + k].reshape(shape)
        i += k
    return out


def _loss_acc(theta: torch.Tensor, split: str) -> tuple[float, float]:
    X, y = ws.zoo.digits(split)
    p = {k: v.double() for k, v in _mlp_params(theta).items()}
    h = torch.relu(X.double() @ p["0.weight"].T + p["0.bias"])
    logits = h @ p["2.weight"].T + p["2.bias"]
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).double().mean())


def _permuted(theta: torch.Tensor, perm: np.ndarray) -> torch.Tensor:
    """B's hidden units moved so that unit i is at position perm[i]."""
    p = _mlp_params(theta)
    inv = torch.from_numpy(np.argsort(perm))
    q = {"0.weight": p["0.weight"][inv], "0.bias": p["0.bias"][inv],
         "2.weight": p["2.weight"][:, inv], "2.bias": p["2.bias"]}  # fmt: skip
    return torch.cat([v.reshape(-1) for v in q.values()])


def _barrier(values: np.ndarray) -> float:
    return float((values - ((1 - TS) * values[0] + TS * values[-1])).max())


def test_barriers_equal_direct_evaluations_at_the_path_points(runs, conn):
    a = torch.from_numpy(np.array(ws.Trajectory.load(runs / "r0").snapshot(-1), np.float64))
    b = torch.from_numpy(np.array(ws.Trajectory.load(runs / "r1").snapshot(-1), np.float64))
    (perm,) = conn.perms.values()
    b_al = _permuted(b, perm)
    X, _ = ws.zoo.digits("test")
    same = _mlp_params(b_al), _mlp_params(b)
    out = [torch.relu(X.double() @ p["0.weight"].T.double() + p["0.bias"]) @ p["2.weight"].T
           + p["2.bias"] for p in same]  # fmt: skip
    assert torch.allclose(out[0], out[1], atol=1e-10)  # aligned B computes B's function
    c = torch.from_numpy(conn.bends[0]).double()
    paths = {
        "line": [(1 - t) * a + t * b for t in TS],
        "aligned": [(1 - t) * a + t * b_al for t in TS],
        "curve": [(1 - t) ** 2 * a + 2 * t * (1 - t) * c + t**2 * b_al for t in TS],
    }
    assert conn.paths == ("line", "aligned", "curve") and conn.splits == ("train", "test")
    for path, points in paths.items():
        for split in ("train", "test"):
            direct = np.array([_loss_acc(p, split) for p in points])
            line = conn.profile(path, split)
            assert np.allclose(line.alphas, TS)
            assert np.allclose(line.values, direct[:, 0], rtol=2e-5, atol=1e-6), (path, split)
            assert np.allclose(line.accuracy, direct[:, 1], atol=1e-12), (path, split)
            assert conn.barriers[path][split] == pytest.approx(_barrier(direct[:, 0]), abs=1e-5)
    assert conn.distance_before == pytest.approx(float(torch.linalg.vector_norm(a - b)), 1e-6)
    assert conn.distance_after == pytest.approx(float(torch.linalg.vector_norm(a - b_al)), 1e-6)
    assert conn.distance_after <= conn.distance_before


def test_the_plane_holds_the_aligned_line_and_the_curve(conn):
    surf = conn.surface
    assert surf.values.shape == (4, 5) and np.isfinite(surf.values).all()
    trajs = {t.name: t for t in surf.trajectories}
    assert set(trajs) == {"line", "aligned", "curve"}
    for name in ("aligned", "curve"):  # in the plane: residual 0, A at (0, 0), B at (1, 0)
        t = trajs[name]
        assert np.nanmax(t.residual[1:]) < 1e-4
        assert np.allclose(t.coords[0], [0, 0], atol=1e-6)
        assert np.allclose(t.coords[-1], [1, 0], atol=1e-5)
        assert np.allclose(t.plane_loss, t.loss, rtol=1e-4, atol=1e-5)
    assert np.allclose(trajs["curve"].loss, conn.profile("curve").values)


def test_save_and_load_give_the_same_result(conn, tmp_path):
    ws.save(conn, tmp_path / "c")
    back = ws.load(tmp_path / "c")
    assert type(back) is ws.Connection and back.barriers == conn.barriers
    assert back.paths == conn.paths and back.splits == conn.splits
    for key, line in conn.profiles.items():
        assert np.array_equal(back.profiles[key].values, line.values)
    assert np.array_equal(back.bends, conn.bends)
    assert all(np.array_equal(back.perms[g], p) for g, p in conn.perms.items())
    assert np.array_equal(back.surface.values, conn.surface.values)
    assert [t.name for t in back.surface.trajectories] == ["line", "aligned", "curve"]
    assert back.metadata["a"] == conn.metadata["a"]


def test_spectra_along_the_paths_match_the_curvature_api(runs):
    problem = ws.zoo.problem("digits-mlp")
    c = ws.connect_runs(problem, runs / "r0", runs / "r1", curve="none", ts=3, grid=None,
                        test=False, spectra_at=[0.5], top_k=1)  # fmt: skip
    assert c.paths == ("line", "aligned") and c.surface is None and c.bends is None
    a = ws.Trajectory.load(runs / "r0").theta(-1)
    b = ws.Trajectory.load(runs / "r1").theta(-1)
    top = ws.top_eigenpairs(ws.HessianOperator(ws.Objective(problem), (a + b) / 2), k=1)
    assert c.spectra["line"].eigenvalues[0, 0] == pytest.approx(float(top.eigenvalues[0]), rel=1e-3)


def test_a_curve_run_is_refused_without_resume_and_continued_with_it(runs, tmp_path):
    problem = ws.zoo.problem("digits-mlp")
    kw = {"align": "none", "ts": 3, "grid": None, "test": False, "curve_dir": tmp_path / "c"}
    first = ws.connect_runs(problem, runs / "r0", runs / "r1", steps=10, **kw)
    with pytest.raises(ws.WeightspaceError, match=r"^curve_dir: .* holds a curve run"):
        ws.connect_runs(problem, runs / "r0", runs / "r1", steps=10, **kw)
    more = ws.connect_runs(problem, runs / "r0", runs / "r1", steps=20, resume=True, **kw)
    assert more.metadata["curve"]["steps_done"] == 20
    assert more.metadata["curve_losses"][:10] == first.metadata["curve_losses"]


# ----------------------------------------------------------------------------- CLI and report
def test_the_command_writes_the_result_and_answers_json(runs, tmp_path, capsys):
    out = tmp_path / "ab"
    rc = main(["connect", "--problem", "digits-mlp", f"{runs / 'r0'}:60", str(runs / "r1"),
               "--steps", "20", "--points", "5", "--grid", "4", "4", "-o", str(out),
               "--json", "--no-progress"])  # fmt: skip
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["command"] == "connect"
    back = ws.load(payload["artifacts"]["connection"])
    assert payload["summary"]["barriers"] == back.barriers
    assert back.metadata["a"]["step"] == 60 and (tmp_path / "ab.curve").is_dir()


def test_command_errors_are_one_line_naming_the_flag(runs, tmp_path, capsys):
    rc = main(["connect", "--problem", "digits-mlp", str(runs / "r0"), str(runs / "r1"),
               "--steps", "20", "--lr", "1e6", "-o", str(tmp_path / "x"),
               "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert err.startswith("weightspace connect: error: --lr: curve training diverged")
    rc = main(["connect", "--problem", "digits-cnn", str(runs / "r0"), str(runs / "r1"),
               "-o", str(tmp_path / "y"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.startswith("weightspace connect: error: RUN_A: run ")


def test_a_model_without_a_derivable_structure_is_a_one_line_error(tmp_path, capsys):
    class Odd(torch.nn.Module):  # mixes units of the hidden layer: no permutation structure
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 6), torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.b(self.a(x).reshape(-1, 2, 3)).sum(1)

    X, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    problem = ws.Problem(Odd(), torch.nn.CrossEntropyLoss(), (X, y))
    for name in ("a", "b"):
        with ws.Recorder(copy.deepcopy(problem.model), tmp_path / name) as rec:
            rec.record(0)
    with pytest.raises(ws.WeightspaceError) as e:
        ws.connect_runs(problem, tmp_path / "a", tmp_path / "b", curve="none", grid=None)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and msg.startswith("align: the permutation structure")
    assert "reshape" in msg and "align='none'" in msg
    spec = tmp_path / "odd.py"
    spec.write_text(
        "import torch\n"
        "class Odd(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.a, self.b = torch.nn.Linear(4, 6), torch.nn.Linear(3, 2)\n"
        "    def forward(self, x):\n"
        "        return self.b(self.a(x).reshape(-1, 2, 3)).sum(1)\n"
        "def make():\n"
        "    import weightspace as ws\n"
        "    X, y = torch.randn(16, 4), torch.randint(0, 2, (16,))\n"
        "    return ws.Problem(Odd(), torch.nn.CrossEntropyLoss(), (X, y))\n"
    )
    rc = main(["connect", "--problem", f"{spec}:make", str(tmp_path / "a"), str(tmp_path / "b"),
               "--curve", "none", "--no-surface", "-o", str(tmp_path / "o"),
               "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert err.startswith("weightspace connect: error: --align: the permutation structure")
    assert "--align none" in err


def test_the_report_draws_the_connection(conn, tmp_path):
    summary = build_report(tmp_path / "r.html", results=[("ab", conn)], animations=False)
    assert summary.results == {"connection": ["ab"]} and not summary.skipped
    html = (tmp_path / "r.html").read_text()
    assert "Between r0 (step 60) and r1 (step 60)" in html
    assert "barrier (train)" in html and "barrier (test)" in html
    assert f"{conn.barriers['aligned']['test']:.4g}" in html
    assert {p.rsplit(".", 1)[1] for p in summary.files} >= {"ply", "vtk"}
