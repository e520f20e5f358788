"""PLY and VTK meshes read back with meshio: vertex count nx·ny, positions and values."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from weightspace.errors import WeightspaceError
from weightspace.render import export, plane_trajectory

meshio = pytest.importorskip("meshio")

XS = np.linspace(-1.0, 1.0, 5)
YS = np.linspace(0.0, 3.0, 4)  # non-square: nx = 5, ny = 4
VALUES = 1.0 + XS[None, :] ** 2 + YS[:, None]  # values[j, i] at (xs[i], ys[j])


def grid_points(z):
    gx, gy = np.meshgrid(XS, YS)
    return np.column_stack([gx.ravel(), gy.ravel(), np.ravel(z)])


@pytest.mark.parametrize("binary", [True, False])
def test_ply_reads_back_with_grid_vertices_values_and_colours(tmp_path, binary):
    values = VALUES.copy()
    values[1, 2] = np.nan  # one divergent interior vertex
    path = export.write_ply(tmp_path / "surface.ply", XS, YS, values, z_scale=2.0, binary=binary)
    mesh = meshio.read(path)
    assert mesh.points.shape == (XS.size * YS.size, 3)
    finite = np.isfinite(values.ravel())
    expected = grid_points(2.0 * values)
    np.testing.assert_allclose(mesh.points[finite], expected[finite])
    np.testing.assert_allclose(mesh.point_data["loss"], values.ravel())  # NaN where NaN
    # two triangles per cell whose corners are finite: 12 cells, 4 touch the NaN vertex
    tris = mesh.cells_dict["triangle"]
    assert len(tris) == 2 * ((XS.size - 1) * (YS.size - 1) - 4)
    assert not np.isin(1 * XS.size + 2, tris)
    rgb = np.column_stack([mesh.point_data[c] for c in ("red", "green", "blue")])
    from matplotlib import colormaps

    lo, hi = np.nanargmin(values), np.nanargmax(values)
    viridis = np.round(
        np.array([colormaps["viridis"](0.0)[:3], colormaps["viridis"](1.0)[:3]]) * 255
    )
    np.testing.assert_array_equal(rgb[[lo, hi]], viridis)
    np.testing.assert_array_equal(rgb[1 * XS.size + 2], [128, 128, 128])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["surface.ply"]


def test_ply_log_and_clip_change_heights_not_losses(tmp_path):
    path = export.write_ply(tmp_path / "s.ply", XS, YS, VALUES, log=True, clip=3.0)
    mesh = meshio.read(path)
    np.testing.assert_allclose(mesh.points[:, 2], np.log10(np.minimum(VALUES, 3.0)).ravel())
    np.testing.assert_allclose(mesh.point_data["loss"], VALUES.ravel())


def test_vtk_holds_grid_quads_and_trajectory_polylines(tmp_path):
    trajs = [
        plane_trajectory(
            [[-0.5, 0.5], [0.0, 1.0], [0.5, 2.0]], loss=[4.0, 3.0, 2.0], steps=[0, 5, 10]
        ),
        plane_trajectory([[0.0, 0.0], [0.25, 0.5]]),  # no loss: drawn on the surface
    ]
    path = export.write_vtk(tmp_path / "surface.vtk", XS, YS, VALUES, trajs)
    mesh = meshio.read(path)
    n = XS.size * YS.size
    assert mesh.points.shape == (n + 5, 3)
    np.testing.assert_allclose(mesh.points[:n], grid_points(VALUES))
    np.testing.assert_allclose(mesh.point_data["loss"][:n], VALUES.ravel())
    assert len(mesh.cells_dict["quad"]) == (XS.size - 1) * (YS.size - 1)
    np.testing.assert_array_equal(
        mesh.cells_dict["line"], [[n, n + 1], [n + 1, n + 2], [n + 3, n + 4]]
    )
    np.testing.assert_array_equal(mesh.point_data["run"], [-1] * n + [0, 0, 0, 1, 1])
    np.testing.assert_allclose(mesh.points[n : n + 3, 2], [4.0, 3.0, 2.0])
    np.testing.assert_allclose(mesh.point_data["step"][n : n + 3], [0, 5, 10])
    assert np.isnan(mesh.point_data["loss"][n + 3 :]).all()  # not known: NaN
    # on the surface 1 + x² + y: exact at a node; between x-nodes 0 and 0.5, x² is replaced
    # by its chord (0.25 at 0.5 -> 0.125 at 0.25), and y is linear
    np.testing.assert_allclose(mesh.points[n + 3, 2], 1.0)
    np.testing.assert_allclose(mesh.points[n + 4, 2], 1.0 + 0.125 + 0.5)


def test_vtk_ascii_reads_back(tmp_path):
    path = export.write_vtk(tmp_path / "s.vtk", XS, YS, VALUES, binary=False)
    mesh = meshio.read(path)
    assert mesh.points.shape[0] == XS.size * YS.size
    np.testing.assert_allclose(mesh.point_data["loss"], VALUES.ravel())


def test_surface_mesh_vertex_order_is_j_nx_plus_i():
    points, quads, loss, height = export.surface_mesh(XS, YS, VALUES, z_scale=0.5)
    j, i = 2, 3
    assert tuple(points[j * XS.size + i]) == (XS[i], YS[j], 0.5 * VALUES[j, i])
    assert loss[j * XS.size + i] == height[j * XS.size + i] == VALUES[j, i]
    assert quads.dtype == np.int32 and quads.shape == ((XS.size - 1) * (YS.size - 1), 4)
    np.testing.assert_array_equal(quads[0], [0, 1, XS.size + 1, XS.size])


def test_bad_paths_and_missing_meshio(tmp_path, monkeypatch):
    with pytest.raises(WeightspaceError, match=r"ending in \.ply"):
        export.write_ply(tmp_path / "s.obj", XS, YS, VALUES)
    with pytest.raises(WeightspaceError, match="does not exist"):
        export.write_vtk(tmp_path / "no" / "s.vtk", XS, YS, VALUES)
    with pytest.raises(WeightspaceError, match=r"trajectories\[0\]: expected a .*PlaneTrajectory"):
        export.write_vtk(tmp_path / "s.vtk", XS, YS, VALUES, [{"coords": [[0.0, 0.0]]}])
    monkeypatch.setitem(sys.modules, "meshio", None)  # import meshio now fails
    with pytest.raises(WeightspaceError, match="pip install meshio"):
        export.write_ply(tmp_path / "s.ply", XS, YS, VALUES)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(meshio, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        export.write_ply(tmp_path / "s.ply", XS, YS, VALUES)
    assert list(tmp_path.iterdir()) == []
