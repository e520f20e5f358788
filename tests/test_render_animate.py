"""Animations: one GIF frame per checkpoint, MP4 only with ffmpeg, a missing ffmpeg is
reported once and never fails."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import stat

import numpy as np
import pytest
from PIL import Image

from weightspace.curvature import SpectralDensity
from weightspace.errors import WeightspaceError
from weightspace.render import animate, plane_trajectory

XS = np.linspace(-1.0, 1.0, 11)
YS = np.linspace(-1.0, 1.0, 9)
VALUES = XS[None, :] ** 2 + YS[:, None] ** 2 + 0.1
T = 5
COORDS = np.column_stack([np.linspace(-0.8, 0.0, T), np.linspace(0.8, 0.0, T)])
PATH = plane_trajectory(COORDS, name="sgd", steps=np.arange(T) * 10)
GRID = np.linspace(-1.0, 6.0, 40)


def density(values, sigma=0.2, grid=GRID):
    """A SpectralDensity as curvature_along gives one per checkpoint (one probe)."""
    one = np.ones((1, 1))
    return SpectralDensity(grid, values, values[None], 0 * values, one, one, sigma, 1, 1, 1)


DENS = [density(np.exp(-((GRID - t) ** 2))) for t in range(T)]
SMALL = {"figsize": (4.0, 2.0), "dpi": 40}


@pytest.fixture
def fresh_reports(monkeypatch):
    monkeypatch.setattr(animate, "_reported", set())


def gif_frames(path):
    with Image.open(path) as im:
        frames = []
        for q in range(im.n_frames):
            im.seek(q)
            frames.append(np.asarray(im.convert("RGB")))
    return frames


def test_gif_has_one_frame_per_checkpoint_and_the_path_grows(tmp_path):
    result = animate.animate_trajectory(
        tmp_path / "train.gif", XS, YS, VALUES, PATH, densities=DENS, formats=("gif",), **SMALL
    )
    assert result.paths == {"gif": tmp_path / "train.gif"}
    assert result.n_frames == T and result.notes == ()
    frames = gif_frames(result.paths["gif"])
    assert len(frames) == T
    assert frames[0].shape == (result.size[1], result.size[0], 3) == (80, 160, 3)
    changed = [np.mean(np.any(f != frames[0], axis=-1)) for f in frames[1:]]
    assert all(c > 0 for c in changed) and changed[-1] > changed[0]  # more drawn each frame
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.gif"]


def test_missing_ffmpeg_is_reported_once_and_the_gif_is_still_written(
    tmp_path, monkeypatch, caplog, fresh_reports
):
    monkeypatch.setattr(animate.shutil, "which", lambda name: None)
    caplog.set_level(logging.WARNING, logger="weightspace.render.animate")
    for name in ("a", "b"):
        result = animate.animate_trajectory(tmp_path / name, XS, YS, VALUES, PATH, **SMALL)
        assert set(result.paths) == {"gif"}
        assert result.notes == (animate.FFMPEG_MISSING,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif", "b.gif"]
    assert [r.getMessage() for r in caplog.records].count(animate.FFMPEG_MISSING) == 1


def test_failing_ffmpeg_is_a_note_not_a_crash(tmp_path, monkeypatch, fresh_reports):
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\ncat > /dev/null\necho 'Unknown encoder libx264' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(animate.shutil, "which", lambda name: str(fake))
    out = tmp_path / "out"
    out.mkdir()
    result = animate.animate_trajectory(out / "run", XS, YS, VALUES, PATH, **SMALL)
    assert set(result.paths) == {"gif"}
    assert result.notes == ("MP4 skipped: ffmpeg failed (Unknown encoder libx264)",)
    assert sorted(p.name for p in out.iterdir()) == ["run.gif"]  # no partial MP4


def test_mp4_with_ffmpeg(tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (optional: MP4 output)")
    result = animate.animate_trajectory(
        tmp_path / "run", XS, YS, VALUES, PATH, densities=DENS, formats=("mp4",), **SMALL
    )
    data = result.paths["mp4"].read_bytes()
    assert data[4:8] == b"ftyp" and len(data) > 1000
    assert result.notes == ()


def test_bad_input_is_refused_before_drawing(tmp_path):
    x = tmp_path / "x"
    with pytest.raises(WeightspaceError, match="densities: expected a sequence of SpectralDensity"):
        animate.animate_trajectory(x, XS, YS, VALUES, PATH, densities=np.ones((T, GRID.size)))
    with pytest.raises(WeightspaceError, match=r"densities: expected one per checkpoint \(5\)"):
        animate.animate_trajectory(x, XS, YS, VALUES, PATH, densities=DENS[:3])
    other = [*DENS[:4], density(DENS[4].density, sigma=0.5)]
    with pytest.raises(WeightspaceError, match=r"densities\[4\]: expected the grid and sigma"):
        animate.animate_trajectory(x, XS, YS, VALUES, PATH, densities=other)
    with pytest.raises(WeightspaceError, match="formats"):
        animate.animate_trajectory(x, XS, YS, VALUES, PATH, formats=("avi",))
    with pytest.raises(WeightspaceError, match=r"coords: expected shape \(T, 2\)"):
        animate.animate_trajectory(x, XS, YS, VALUES, plane_trajectory(np.ones((3, 3))))
    bad = dataclasses.replace(PATH, coords=np.ones((T, 3)))
    with pytest.raises(WeightspaceError, match=r"trajectory.coords: expected shape \(T, 2\)"):
        animate.animate_trajectory(x, XS, YS, VALUES, bad)
    with pytest.raises(WeightspaceError, match="trajectory: expected a .*Trajectory, got ndarray"):
        animate.animate_trajectory(x, XS, YS, VALUES, COORDS)
    with pytest.raises(WeightspaceError, match="trajectory: expected one PlaneTrajectory, got 2"):
        animate.animate_trajectory(x, XS, YS, VALUES, [PATH, PATH])
    with pytest.raises(WeightspaceError, match="does not exist"):
        animate.animate_trajectory(tmp_path / "no" / "x", XS, YS, VALUES, PATH)
    assert list(tmp_path.iterdir()) == []
