"""Nothing lost, nothing leaked: the hostile-user trials.

Every user error is one line on stderr with exit 1 (2 for a flag argparse refuses), no
traceback without ``-v``, and no file left that was not there before; two writers on one
directory are refused (tested with real processes); ``--overwrite`` replaces only what
weightspace wrote; readers open only regular files; a full disk is named as such; a report
draws what it can and lists what it skipped; a resumed surface equals an uninterrupted one
bit for bit with the default engine choice.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import weightspace as ws
from _util import REPO
from weightspace import parallel
from weightspace._lock import DirectoryLock, LockedError
from weightspace.cli import main
from weightspace.landscape import _engine
from weightspace.outputs import MANIFEST
from weightspace.testing import write_run

# Problems for the trials, loaded with --problem FILE:FUNCTION. ``gated`` waits at every
# forward pass until the file named by $WS_GATE exists: a writer that holds its lock for as
# long as a test needs it to.
PROBLEMS = r"""
import os, time
import torch
import weightspace as ws


def _data(n=32, d=4):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g), torch.randint(0, 2, (n,), generator=g)


def _model(d=4):
    torch.manual_seed(0)
    return torch.nn.Linear(d, 2)


def good():
    return ws.Problem(_model(), torch.nn.functional.cross_entropy, _data(), name="good")


def nan_loss():
    return ws.Problem(_model(), lambda out, y: out.sum() * float("nan"), _data(), name="nan")


def _fragile(out, y):  # finite near the recorded weights, NaN far from them
    loss = torch.nn.functional.cross_entropy(out, y)
    return loss if out.abs().max() < 1e3 else loss * float("nan")


def fragile():
    return ws.Problem(_model(), _fragile, _data(), name="fragile")


def vector_loss():
    return ws.Problem(_model(), lambda out, y: out.sum(1), _data(), name="vector")


def wrong_width():
    return ws.Problem(_model(5), torch.nn.functional.cross_entropy, _data(), name="width")


def empty():
    X, y = _data()
    return ws.Problem(_model(), torch.nn.functional.cross_entropy, (X[:0], y[:0]))


def raises():
    raise ValueError("no GPU found\nsecond line")


class Gated(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = _model()

    def forward(self, x):
        while not os.path.exists(os.environ["WS_GATE"]):
            time.sleep(0.01)
        return self.inner(x)


def gated():
    return ws.Problem(Gated(), torch.nn.functional.cross_entropy, _data(), name="gated")
"""


@pytest.fixture
def problems(tmp_path) -> str:
    path = tmp_path / "problems.py"
    path.write_text(PROBLEMS)
    return str(path)


def call(capsys, *args):
    """``(exit code, stderr lines)`` of ``weightspace ARGS`` in this process."""
    code = main([*map(str, args), "--no-progress"])
    return code, capsys.readouterr().err.strip().splitlines()


def one_line(capsys, *args, code: int = 1) -> str:
    """Run a command that must fail: exit ``code``, exactly one stderr line, no traceback."""
    got, err = call(capsys, *args)
    assert got == code and len(err) == 1, (got, err)
    assert "Traceback" not in err[0]
    return err[0]


def tree(path: Path) -> set[str]:
    """Every path under ``path`` (hidden ones too), relative."""
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", **extra}


def cli_process(*args, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "weightspace", *map(str, args), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(**env),
    )


class Blocked(BaseException):
    """Raised by :func:`deadline` (not an OSError, which the CLI would report as one)."""


@contextlib.contextmanager
def deadline(seconds: float):
    """Interrupt the block if it has not returned after ``seconds`` (a reader that blocks
    on a FIFO or reads /dev/zero forever)."""

    def interrupt(*_):
        raise Blocked(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def small_run(tmp_path, problems):
    """A recorded run of the ``good`` problem: 4 snapshots."""
    run = tmp_path / "run"
    assert main(["record", "--problem", f"{problems}:good", "--steps", "6", "--every", "2",
                 "-o", str(run), "--no-progress"]) == 0  # fmt: skip
    return run


@pytest.fixture
def ckpts(tmp_path, small_run):
    """Two checkpoint files (state dicts) of the small run."""
    traj, folder = ws.Trajectory.load(small_run), tmp_path / "ckpt"
    folder.mkdir()
    for i in range(2):
        state = traj.layout.unflatten(traj.theta(i))
        torch.save({k: v.clone() for k, v in state.items()}, folder / f"step_{i}.pt")
    return folder


# ---------------------------------------------------------------------------- two writers
def test_two_record_processes_on_one_directory_one_wins_and_the_run_is_a_solo_run(
    tmp_path, problems
):
    """A holds the run's lock (its model waits at the gate); B and C (with --overwrite),
    started meanwhile, exit 1 naming the directory while A is still blocked; A then
    completes a run equal to a solo run of its own settings."""
    gate, out = tmp_path / "gate", tmp_path / "same"
    args = ["record", "--problem", f"{problems}:gated", "--steps", "4", "--every", "1", "-o"]
    a = cli_process(*args, out, "--lr", "0.1", WS_GATE=str(gate))
    try:
        lock = out / ".lock"
        limit = time.monotonic() + 120
        while not (lock.exists() and lock.read_text().strip() == str(a.pid)):
            assert a.poll() is None, a.communicate()
            assert time.monotonic() < limit, "A never took the lock"
            time.sleep(0.02)
        b = cli_process(*args, out, "--lr", "0.5", WS_GATE=str(gate))
        c = cli_process(*args, out, "--lr", "0.5", "--overwrite", WS_GATE=str(gate))
        for other, fragment in (
            (b, "already exists; pass --overwrite"),
            (c, f"being written by another process (pid {a.pid})"),  # and deletes nothing
        ):
            _, err = other.communicate(timeout=120)  # although A holds the lock forever
            lines = err.strip().splitlines()
            assert other.returncode == 1 and len(lines) == 1, lines
            assert str(out) in lines[0] and fragment in lines[0], lines
        assert a.poll() is None  # A is still waiting at the gate
        gate.touch()
        _, a_err = a.communicate(timeout=120)
        assert a.returncode == 0, a_err
    finally:
        gate.touch()
        a.kill()
    solo = tmp_path / "solo"
    done = cli_process(*args, solo, "--lr", "0.1", WS_GATE=str(gate))
    assert done.wait(timeout=120) == 0
    got, want = ws.Trajectory.load(out), ws.Trajectory.load(solo)
    assert np.array_equal(got.steps, want.steps) and np.array_equal(got.array(), want.array())
    assert got.metadata["lr"] == 0.1
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(want.steps)  # no interleaved second writer


def test_a_sigkilled_writer_leaves_no_lock(tmp_path, problems):
    gate, out = tmp_path / "gate", tmp_path / "run"
    a = cli_process("record", "--problem", f"{problems}:gated", "--steps", "4", "-o", out,
                    WS_GATE=str(gate))  # fmt: skip
    try:
        limit = time.monotonic() + 120
        while not ((out / ".lock").exists() and (out / ".lock").read_text().strip()):
            assert a.poll() is None and time.monotonic() < limit
            time.sleep(0.02)
        with pytest.raises(LockedError, match=str(a.pid)):
            DirectoryLock(out / ".lock", "run").acquire()
    finally:
        a.kill()
        a.wait(timeout=60)
    lock = DirectoryLock(out / ".lock", "run").acquire()  # the kernel dropped A's lock
    assert lock.held
    lock.release()


def test_two_recorders_in_one_process_and_a_second_sampler_are_refused(
    tmp_path, tiny_model, small_run, problems, capsys
):
    with ws.Recorder(tiny_model, tmp_path / "r") as rec:
        rec.record(0)
        with pytest.raises(LockedError, match="being written by another process"):
            ws.Recorder(tiny_model, tmp_path / "r")
    jumps = tmp_path / "jumps"
    jumps.mkdir()
    with DirectoryLock(jumps / ".lock", "out"):
        msg = one_line(capsys, "sample", "--problem", f"{problems}:good", small_run,
                       "--step-sizes", "0.5", "--seeds", "0", "--retrain-steps", "2",
                       "--no-project", "-o", jumps)  # fmt: skip
    assert str(jumps) in msg and "another process" in msg
    assert tree(jumps) == {".lock"}


def test_a_surface_whose_checkpoint_is_being_written_is_refused(small_run, problems, capsys):
    out = small_run.parent / "surf"
    lock = parallel.partial_path(out, 0, 1)
    lock = lock.with_name(lock.name.removesuffix(".npz") + ".lock")
    with DirectoryLock(lock, "checkpoint"):
        msg = one_line(capsys, "surface", "--problem", f"{problems}:good", small_run,
                       "--grid", "3", "--resume", "-o", out)  # fmt: skip
    assert "another process" in msg
    assert not ws.results.result_paths(out)[0].exists()


# ---------------------------------------------------------------------------- overwrite
def test_overwrite_replaces_only_what_weightspace_wrote(small_run, problems, capsys):
    root = small_run.parent
    surf = root / "art" / "surf"
    base = ["surface", "--problem", f"{problems}:good", small_run, "--grid", "3", "-o", surf]
    assert call(capsys, *base)[0] == 0
    first = ws.load(surf)
    assert call(capsys, *base, "--seed", "1", "--overwrite")[0] == 0  # its own result
    assert not np.array_equal(ws.load(surf).values, first.values)
    # a foreign file at the result path: refused with --overwrite, left as it was
    foreign = root / "art" / "thesis.npz"
    foreign.write_bytes(b"my data")
    msg = one_line(capsys, *base[:-1], root / "art" / "thesis", "--overwrite")
    assert "not written by weightspace" in msg and foreign.read_bytes() == b"my data"
    # a run directory holding a user's file besides the run: refused, nothing deleted
    (small_run / "notes.txt").write_text("mine")
    before = tree(small_run)
    msg = one_line(capsys, "record", "--problem", f"{problems}:good", "--steps", "2",
                   "-o", small_run, "--overwrite")  # fmt: skip
    assert "notes.txt" in msg and tree(small_run) == before
    (small_run / "notes.txt").unlink()
    assert call(capsys, "record", "--problem", f"{problems}:good", "--steps", "2",
                "--every", "1", "-o", small_run, "--overwrite")[0] == 0  # fmt: skip
    assert list(ws.Trajectory.load(small_run).steps) == [0, 1, 2]


def test_report_overwrite_keeps_foreign_files_beside_the_page(small_run, capsys):
    out = small_run.parent / "pages" / "r.html"
    assert call(capsys, "report", small_run, "-o", out)[0] == 0
    (out.parent / "figure.png").write_bytes(b"mine")
    assert call(capsys, "report", small_run, "-o", out, "--overwrite")[0] == 0
    assert (out.parent / "figure.png").read_bytes() == b"mine"
    manifest = json.loads((out.parent / MANIFEST).read_text())
    assert "r.html" in manifest["files"]
    foreign = out.parent / "mine.html"
    foreign.write_text("mine")
    msg = one_line(capsys, "report", small_run, "-o", foreign, "--overwrite")
    assert "mine.html" in msg and foreign.read_text() == "mine"


# ---------------------------------------------------------------------------- one line
@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("raises", "calling raises() of"),
        ("os:system", "calling system() of 'os:system' raised TypeError"),
    ],
)
def test_a_problem_factory_that_raises_is_one_line(tmp_path, problems, capsys, spec, fragment):
    spec = f"{problems}:{spec}" if spec == "raises" else spec
    msg = one_line(capsys, "record", "--problem", spec, "-o", tmp_path / "r")
    assert fragment in msg and not (tmp_path / "r").exists()
    if spec.endswith("raises"):
        assert "ValueError: no GPU found" in msg and "second line" not in msg


@pytest.mark.parametrize(
    ("spec", "flags", "fragment"),
    [
        ("nan_loss", [], "training diverged at step"),
        ("good", ["--lr", "inf"], "--lr: expected a finite positive number, got inf"),
        ("good", ["--weight-decay", "inf"], "--weight-decay: expected a finite non-negative"),
        ("vector_loss", [], "loss_fn: returned (32,), expected a scalar"),
        ("wrong_width", [], "raised RuntimeError on the batch of step 1"),
        ("empty", [], "the data set is empty"),
    ],
)
def test_a_failed_record_leaves_no_run_directory(tmp_path, problems, capsys, spec, flags, fragment):
    msg = one_line(capsys, "record", "--problem", f"{problems}:{spec}", "--steps", "3",
                   "--batch-size", "32", *flags, "-o", tmp_path / "r")  # fmt: skip
    assert fragment in msg, msg
    assert not (tmp_path / "r").exists()


def test_seeds_outside_what_the_generators_take_are_refused(tmp_path, small_run, capsys):
    msg = one_line(capsys, "record", "--problem", "digits-mlp", "--init-seed", 10**23,
                   "-o", tmp_path / "r", code=2)  # fmt: skip
    assert "--init-seed" in msg and "2**64" in msg
    msg = one_line(capsys, "project", small_run, "--seed", 10**23, "-o", tmp_path / "p", code=2)
    assert "--seed" in msg
    with pytest.raises(ws.WeightspaceError, match="seed"):
        ws.zoo.problem("digits-mlp", seed=-1)
    assert not (tmp_path / "r").exists() and not (tmp_path / "p.npz").exists()


def test_os_errors_on_the_output_path_are_one_line(tmp_path, small_run, ckpts, capsys, monkeypatch):
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile" / "r", tmp_path / ("n" * 300)):
        code = "ENOTDIR" if "afile" in str(out) else "ENAMETOOLONG"
        for args in (
            ["record", "--problem", "digits-mlp", "--steps", "2", "-o", out],
            ["project", small_run, "-o", out],
            ["import", ckpts, "-o", out],
        ):
            msg = one_line(capsys, *args)
            assert f"({code})" in msg, (args, msg)
    before = tree(tmp_path)

    def read_only(self, *a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    msg = one_line(capsys, "record", "--problem", "digits-mlp", "-o", tmp_path / "ro" / "r")
    assert "read-only file system (EROFS); the filesystem is read-only" in msg
    assert tree(tmp_path) == before


def test_the_same_run_twice_and_a_one_snapshot_run_are_refused(tmp_path, small_run, capsys):
    msg = one_line(capsys, "project", small_run, small_run, "-o", tmp_path / "p")
    assert "given twice" in msg
    one = write_run(tmp_path / "one", np.zeros((1, 10)))
    msg = one_line(capsys, "project", one, "-o", tmp_path / "p")
    assert "has 1 snapshot" in msg and "at least 2" in msg
    msg = one_line(capsys, "sample", "--problem", "digits-mlp", one, "--retrain-steps", "2",
                   "-o", tmp_path / "jumps")  # fmt: skip
    assert "has 1 snapshot" in msg
    assert sorted(tree(tmp_path)) == sorted(tree(tmp_path) - {"p.npz", "p.json", "jumps"})
    assert not (tmp_path / "jumps").exists()


def test_grids_too_large_to_hold_are_refused_before_any_work(tmp_path, small_run, problems,
                                                            capsys):  # fmt: skip
    p = ["--problem", f"{problems}:good", small_run]
    msg = one_line(capsys, "surface", *p, "--grid", "1000000", "-o", tmp_path / "s")
    assert "--grid" in msg and "1,000,000,000,000 points" in msg
    msg = one_line(capsys, "line", *p, "--points", "100000000000", "-o", tmp_path / "l")
    assert "--points" in msg and "more than the 10,000,000" in msg


def test_a_broken_pipe_is_not_a_traceback(small_run):
    done = subprocess.run(
        f"{sys.executable} -m weightspace info {small_run} --json | head -c 1",
        shell=True, capture_output=True, text=True, env=cli_env(), timeout=120,
    )  # fmt: skip
    assert done.stdout == "{" and done.stderr == ""


def test_a_refused_pickle_checkpoint_is_one_line(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "ckpt").mkdir()
    torch.save({"w": torch.zeros(2), "x": Payload()}, tmp_path / "ckpt" / "step_1.pt")
    msg = one_line(capsys, "import", tmp_path / "ckpt", "-o", tmp_path / "imp")
    assert "refused or unreadable" in msg and not (tmp_path / "imp").exists()


def test_stale_leftovers_of_killed_writers_are_cleaned(tmp_path, ckpts, tiny_model, capsys):
    stale = tmp_path / ".imp.importing-999999"
    (stale / "snapshots").mkdir(parents=True)
    theirs = tmp_path / ".imp.importing-notes"  # a name like ours, not written by us: kept
    theirs.mkdir()
    assert call(capsys, "import", ckpts, "-o", tmp_path / "imp")[0] == 0
    assert not stale.exists() and not (tmp_path / ".imp.lock").exists()
    assert theirs.is_dir()
    with ws.Recorder(tiny_model, tmp_path / "rec") as rec:
        rec.record(0)
    tmp = tmp_path / "rec" / "snapshots" / ".000000001.npy.abc.tmp"
    tmp.write_bytes(b"half")
    with open(tmp_path / "rec" / "metrics.jsonl", "a") as f:
        f.write('{"step": 1, "lo')  # torn by a kill
    with ws.Recorder(tiny_model, tmp_path / "rec") as rec:
        rec.record(1, loss=0.5)
    assert not tmp.exists()
    assert ws.Trajectory.load(tmp_path / "rec").metrics["loss"].tolist()[-1] == 0.5
    lines = (tmp_path / "rec" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [0, 1]  # the torn line is gone


# ---------------------------------------------------------------------------- validated files
def edit_header(run: Path, edit) -> None:
    header = json.loads((run / "run.json").read_text())
    edit(header)
    (run / "run.json").write_text(json.dumps(header))


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda h: h.update(recorder="every 5"), "'recorder' must be a JSON object"),
        (lambda h: h.update(metadata=[1, 2]), "'metadata' must be a JSON object"),
        (lambda h: h["layout"]["shapes"].__setitem__(0, ["2", 4]), "shape"),
        (lambda h: h["recorder"].update(dtype="float128"), "recorder dtype 'float128'"),
        (lambda h: h["recorder"].update(every=0), "recorder 'every' must be a positive"),
    ],
)
def test_a_hand_edited_run_header_is_one_line_naming_the_file(small_run, capsys, edit,
                                                             fragment):  # fmt: skip
    edit_header(small_run, edit)
    msg = one_line(capsys, "info", small_run)
    assert "run.json" in msg and fragment in msg, msg


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('{"step": "5"}', "step '5'"),
        ('{"step": null}', "step None"),
        ('{"step": 1e400}', "step inf"),
        ('{"step": -3}', "step -3"),
    ],
)
def test_bad_metric_rows_are_one_line_naming_the_line(small_run, capsys, line, fragment):
    path = small_run / "metrics.jsonl"
    rows = path.read_text().splitlines()
    path.write_text("\n".join([line, *rows]) + "\n")
    msg = one_line(capsys, "info", small_run)
    assert "metrics.jsonl: line 1" in msg and fragment in msg, msg


def test_a_metrics_directory_is_one_line(small_run, capsys):
    (small_run / "metrics.jsonl").unlink()
    (small_run / "metrics.jsonl").mkdir()
    assert "a directory" in one_line(capsys, "info", small_run)


@pytest.mark.parametrize("victim", ["run.json", "snapshot", "metrics.jsonl"])
@pytest.mark.parametrize("kind", ["fifo", "/dev/null", "/dev/zero"])
def test_fifos_and_devices_in_place_of_run_files_do_not_block(small_run, capsys, victim, kind):
    path = (
        sorted((small_run / "snapshots").iterdir())[-1]
        if victim == "snapshot"
        else small_run / victim
    )
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(kind)
    with deadline(5):  # a reader that opened it would block (FIFO) or read forever
        msg = one_line(capsys, "info", small_run)
    assert path.name in msg and "not a regular file" in msg, msg


def test_fifo_result_files_do_not_block(tmp_path, small_run, capsys):
    assert call(capsys, "project", small_run, "-o", tmp_path / "p")[0] == 0
    (tmp_path / "p.npz").unlink()
    os.mkfifo(tmp_path / "p.npz")
    with deadline(5):
        with pytest.raises(ws.CorruptRunError, match="not a regular file"):
            ws.load(tmp_path / "p")
        # the report lists it as skipped and draws the run
        assert call(capsys, "report", small_run, "--artifacts", tmp_path, "-o",
                    tmp_path / "r.html")[0] == 0  # fmt: skip
    assert "skipped p:" in (tmp_path / "r.html").read_text()


# ---------------------------------------------------------------------------- full disk
def no_space(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/full/disk/file")


def test_a_full_disk_is_named_and_leaves_no_half_output(tmp_path, small_run, ckpts, problems,
                                                       capsys, monkeypatch):  # fmt: skip
    import weightspace.checkpoints as checkpoints
    import weightspace.record as record
    import weightspace.results as results

    before = tree(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(results, "write_json", no_space)  # the sidecar, after the .npz
        for args in (
            ["project", small_run, "-o", tmp_path / "p"],
            ["surface", "--problem", f"{problems}:good", small_run, "--grid", "3",
             "-o", tmp_path / "s"],
        ):  # fmt: skip
            msg = one_line(capsys, *args)
            assert msg.endswith(
                "/full/disk/file: no space left on device (ENOSPC); free space or write "
                "somewhere else"
            ), msg
            assert not list(tmp_path.glob("*.npz")) and not list(tmp_path.glob("*.json"))
    with monkeypatch.context() as m:
        m.setattr(record, "save_array", no_space)
        msg = one_line(capsys, "record", "--problem", f"{problems}:good", "--steps", "2",
                       "-o", tmp_path / "r")  # fmt: skip
        assert "(ENOSPC)" in msg and not (tmp_path / "r").exists()
    with monkeypatch.context() as m:
        m.setattr(checkpoints, "save_array", no_space)
        msg = one_line(capsys, "import", ckpts, "-o", tmp_path / "imp")
        assert "(ENOSPC)" in msg and not (tmp_path / "imp").exists()
    left = tree(tmp_path) - before
    assert all(".partial" in p for p in left), left  # only the surface's resume checkpoint


def test_a_short_write_on_a_full_disk_is_reported_as_enospc(tmp_path, monkeypatch):
    """numpy reports a short write as "N requested and M written", without an errno."""
    from weightspace import store

    def short_write(f, array, allow_pickle=False):
        raise OSError("3010 requested and 992 written")

    class Full:
        f_bavail, f_frsize = 0, 4096

    monkeypatch.setattr(np, "save", short_write)
    monkeypatch.setattr(os, "statvfs", lambda path: Full())
    with pytest.raises(OSError) as e:
        store.save_array(tmp_path / "a.npy", np.zeros(3))
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "a.npy")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- degenerate
def test_an_all_nan_surface_and_line_are_saved_and_the_report_skips_nothing_else(
    tmp_path, small_run, problems, capsys
):
    """All-NaN landscapes are results (with their NaN count), drawn as "diverged
    everywhere"; a result that cannot be read is listed in the page's Skipped section."""
    art = tmp_path / "art"
    p = ["--problem", f"{problems}:fragile", small_run]  # the region does not hold the centre
    assert call(capsys, "surface", *p, "--grid", "3", "--span", "1e4", "2e4",
                "-o", art / "nan-surface")[0] == 0  # fmt: skip
    assert call(capsys, "line", *p, "--direction", "random", "--alphas", "1e4", "2e4",
                "--points", "5", "-o", art / "nan-line")[0] == 0  # fmt: skip
    surf, line = ws.load(art / "nan-surface"), ws.load(art / "nan-line")
    assert surf.n_nonfinite == 9 and np.isnan(surf.values).all()
    assert line.n_nonfinite == 5 and np.isnan(line.values).all()
    good = ["--problem", f"{problems}:good", small_run]
    assert call(capsys, "surface", *good, "--grid", "3", "-o", art / "good-surface")[0] == 0
    (art / "broken.npz").write_bytes(b"not a zip")  # a result whose arrays are gone
    side = json.loads((art / "good-surface.json").read_text())
    (art / "broken.json").write_text(json.dumps(side))
    page = tmp_path / "r.html"
    assert main(["report", str(small_run), "--artifacts", str(art), "-o", str(page), "--json",
                 "--no-progress"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert [s["name"] for s in summary["skipped"]] == ["broken"]
    assert sorted(summary["results"]["surface"]) == ["good-surface", "nan-surface"]
    html = page.read_text()
    assert html.count("Diverged everywhere in this region") == 2
    assert "<p>Result good-surface.</p>" in html and "Loss landscape on a random plane" in html
    assert "skipped broken: result" in html and ">Skipped</a>" in html


def test_a_section_that_fails_to_draw_is_removed_and_listed(tmp_path, monkeypatch):
    from weightspace.render import build

    xs = np.linspace(-1, 1, 5)
    surf = ws.landscape.Surface(
        xs=xs, ys=xs, values=xs[None] ** 2 + xs[:, None] ** 2, stderr=np.full((5, 5), np.nan),
        accuracy=None, n_nonfinite=0, trajectories=(), metadata={},
    )  # fmt: skip

    def broken(report, name, line):
        report.add_section(f"Interpolation {name}")
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(build, "line_section", broken)
    line = ws.landscape.Line(
        alphas=xs, values=xs**2, stderr=np.full(5, np.nan), accuracy=None, n_nonfinite=0,
        barrier=0.0, monotonic=None, metadata={},
    )  # fmt: skip
    summary = build.build_report(
        tmp_path / "r.html", results=[("s", surf), ("l", line)], animations=False
    )
    html = (tmp_path / "r.html").read_text()
    assert ">Interpolation l</a></h2>" not in html and "<p>Result s.</p>" in html
    assert summary.skipped == [
        ("l", "internal error ZeroDivisionError: a bug; please report this as a bug")
    ]
    assert summary.results == {"surface": ["s"]}


def test_a_tex_like_run_label_is_drawn_as_text(tmp_path, small_run, capsys):
    odd = tmp_path / r"$\undefinedcommand{x}$"
    small_run.rename(odd)
    assert call(capsys, "report", odd, "-o", tmp_path / "r.html")[0] == 0
    assert r"$\undefinedcommand{x}$" in (tmp_path / "r.html").read_text()


def test_a_symlinked_jump_directory_is_refused(tmp_path, small_run, problems, capsys):
    from weightspace._sampling_plan import MANIFEST as SAMPLING

    jumps = tmp_path / "jumps"
    args = ["sample", "--problem", f"{problems}:good", small_run, "--step-sizes", "0.5",
            "--seeds", "0", "--retrain-steps", "2", "--no-project", "-o", jumps]  # fmt: skip
    assert call(capsys, *args)[0] == 0
    manifest = json.loads((jumps / SAMPLING).read_text())
    manifest["runs"].clear()  # the jump is to be retrained when the sampling resumes
    (jumps / SAMPLING).write_text(json.dumps(manifest))
    real = tmp_path / "real"
    real.mkdir()
    (real / "mine.txt").write_text("mine")
    ws_run = jumps / "jump_0.5_seed0"
    for p in sorted(ws_run.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    ws_run.rmdir()
    ws_run.symlink_to(real)
    msg = one_line(capsys, *args)
    assert "symbolic link" in msg and (real / "mine.txt").read_text() == "mine"


# ---------------------------------------------------------------------------- resume
def test_a_resumed_surface_equals_the_uninterrupted_one_with_the_automatic_engine(
    tmp_path, monkeypatch
):
    """The automatic compile decision depends on how many points are left; a resumed run
    must reuse the interrupted run's choice. A stand-in compiler whose values differ from
    eager in the last bits (as inductor's do) makes any switch visible."""

    def fake_compile(fn, **_):
        return lambda *a: fn(*a) * (1 + 1e-12)

    def decide(opts, cached, n_todo, t_point, spent=0.0):  # the timing rule, deterministic
        if opts.compile != "auto":
            return opts.compile == "on", "forced"
        return n_todo > 60, "test"

    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr(_engine, "_decide_compile", decide)
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(40, 3, generator=g, dtype=torch.float64), torch.randn(40, generator=g)
    calls = {"n": 0, "limit": None}

    def loss(out, target):
        calls["n"] += 1
        if calls["limit"] is not None and calls["n"] > calls["limit"]:
            raise KeyboardInterrupt  # the process is killed here
        return torch.nn.functional.mse_loss(out.squeeze(-1), target)

    model = torch.nn.Linear(3, 1).double()
    obj = ws.Objective(ws.Problem(model, loss, (X, y)), batch_size=20)
    d = ws.random_directions(obj.theta0, obj.layout, seed=0)
    xs = np.linspace(-1, 1, 10)

    def surface(**kw):
        return ws.evaluate_plane(obj, obj.theta0, d[0], d[1], xs, xs, **kw)

    reference = surface(engine={"checkpoint_every": 4})
    assert reference.metadata["engine"]["compiled"]  # 100 points > 60: "compiled"
    calls.update(n=0, limit=2 * 50)  # killed after about half the points
    prefix = tmp_path / "surf"
    with pytest.raises(KeyboardInterrupt):
        surface(checkpoint=prefix, engine={"checkpoint_every": 4})
    calls["limit"] = None
    resumed = surface(checkpoint=prefix, resume=True, engine={"checkpoint_every": 4})
    assert 0 < resumed.metadata["engine"]["resumed_points"] < 100
    assert np.array_equal(resumed.values, reference.values)
    eager = surface(engine={"compile": "off"})
    assert not np.array_equal(eager.values, reference.values)  # the switch would show


def test_a_surface_finite_only_at_its_centre_is_drawn_as_diverged(tmp_path):
    from weightspace.render.build import build_report

    xs = np.linspace(-1, 1, 3)
    values = np.full((3, 3), np.nan)
    values[1, 1] = 0.5  # the centre
    surf = ws.landscape.Surface(xs, xs, values, np.full((3, 3), np.nan), None, 8, {})
    summary = build_report(tmp_path / "r.html", results=[("s", surf)], animations=False)
    html = (tmp_path / "r.html").read_text()
    assert summary.skipped == [] and summary.results == {"surface": ["s"]}
    assert "Diverged at 8 of 9 points in this region" in html
