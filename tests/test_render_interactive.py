"""Interactive figures: data placed as given, hover text, escaping, no CDN; the checks of
the trajectories every surface renderer takes."""

from __future__ import annotations

import re

import numpy as np
import plotly
import plotly.graph_objects as go
import pytest

from weightspace.errors import WeightspaceError
from weightspace.landscape import PlaneTrajectory
from weightspace.render import interactive, plane_trajectory, static
from weightspace.render._common import check_trajectories

XS = np.linspace(-1.0, 1.0, 9)
YS = np.linspace(-0.5, 1.0, 6)
PLANE = 2.0 * XS[None, :] - 3.0 * YS[:, None] + 5.0  # values[j, i] at (xs[i], ys[j])
COORDS = np.column_stack([np.linspace(-0.8, 0.0, 5), np.linspace(0.8, 0.0, 5)])


def test_surface_holds_the_grid_and_nan_gaps():
    values = PLANE.copy()
    values[1, 2] = np.inf
    fig = interactive.surface_figure(XS, YS, values)
    surface = fig.data[0]
    assert isinstance(surface, go.Surface)
    np.testing.assert_array_equal(surface.x, XS)
    np.testing.assert_array_equal(surface.y, YS)
    z = np.array(surface.z, dtype=float)
    assert z.shape == (YS.size, XS.size) and np.isnan(z[1, 2])
    np.testing.assert_array_equal(
        np.delete(z.ravel(), 1 * XS.size + 2), np.delete(PLANE.ravel(), 1 * XS.size + 2)
    )


def test_trajectory_height_and_hover():
    traj = plane_trajectory(
        COORDS,
        name="sgd",
        steps=[0, 10, 20, 30, 40],
        loss=[5.0, 4.0, 3.0, 2.0, 1.0],
        plane_loss=[5.5, 4.5, 3.5, 2.5, 1.5],
        residual=[0.0, 0.1, 0.2, 0.3, 0.4],
    )
    fig = interactive.surface_figure(XS, YS, PLANE, [traj, plane_trajectory(COORDS, name="bare")])
    full, bare = fig.data[1], fig.data[2]
    np.testing.assert_array_equal(full.x, COORDS[:, 0])
    np.testing.assert_array_equal(full.z, traj.plane_loss)  # drawn at the projected loss
    # without losses, the path lies on the surface (bilinear interpolation is exact on a plane)
    np.testing.assert_allclose(bare.z, 2.0 * COORDS[:, 0] - 3.0 * COORDS[:, 1] + 5.0, atol=1e-12)
    assert full.text[2] == "step 20<br>loss 3<br>projected loss 3.5<br>off-plane residual 0.2"
    assert bare.text[0] == "step 0<br>loss n/a<br>projected loss n/a<br>off-plane residual n/a"
    with pytest.raises(WeightspaceError, match=r"trajectories\[1\]: expected a .*PlaneTrajectory"):
        interactive.surface_figure(XS, YS, PLANE, [traj, {"coords": COORDS}])


def test_user_text_is_escaped():
    evil = "<script>alert(1)</script>"
    fig = interactive.surface_figure(XS, YS, PLANE, plane_trajectory(COORDS, name=evil), title=evil)
    assert fig.data[1].name == "&lt;script&gt;alert(1)&lt;/script&gt;"
    fig2 = interactive.scatter_figure(COORDS, [evil], hover={evil: np.arange(5)})
    assert fig2.data[0].name.startswith("&lt;script&gt;")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 0" in fig2.data[0].text[0]
    for f in (fig, fig2):
        assert evil not in interactive.html_fragment(f)


def test_scatter_two_and_three_dimensions_with_hover_and_colour():
    runs = [np.arange(10.0).reshape(5, 2), np.arange(10.0, 20.0).reshape(5, 2)]
    fig = interactive.scatter_figure(
        runs, ["a", "b"], hover=[{"loss": np.linspace(1, 0, 5)}] * 2, color=[np.arange(5)] * 2
    )
    assert [type(t) for t in fig.data] == [go.Scatter, go.Scatter]
    np.testing.assert_array_equal(fig.data[1].y, runs[1][:, 1])
    assert fig.data[0].text[4] == "point 4<br>loss 0"
    np.testing.assert_array_equal(fig.data[0].marker.color, np.arange(5))
    fig3 = interactive.scatter_figure(np.ones((4, 3)))
    assert isinstance(fig3.data[0], go.Scatter3d)
    with pytest.raises(WeightspaceError, match="2 or 3 columns"):
        interactive.scatter_figure(np.ones((4, 5)))
    with pytest.raises(WeightspaceError, match=r"hover\['loss'\]: expected length 5"):
        interactive.scatter_figure(runs[0], hover={"loss": [1.0, 2.0]})
    with pytest.raises(WeightspaceError, match="one entry per run"):
        interactive.scatter_figure(runs, hover=[{"loss": np.ones(5)}])


def test_fragment_references_no_script_source_and_no_cdn():
    fig = interactive.surface_figure(XS, YS, PLANE, [plane_trajectory(COORDS)])
    div = interactive.html_fragment(fig, div_id="surface-1")
    assert 'id="surface-1"' in div and "Plotly.newPlot" in div
    assert not re.search(r"<script[^>]*\bsrc=", div)
    assert "cdn" not in div.lower() and "http" not in div.lower()
    with pytest.raises(WeightspaceError, match="plotly Figure"):
        interactive.html_fragment(object())


def test_plotly_js_is_the_installed_bundle():
    js = interactive.plotly_js()
    assert len(js) > 1_000_000
    assert "</script" not in js
    from plotly.offline import get_plotlyjs

    assert js[:200] == get_plotlyjs()[:200] and plotly.__version__


def test_plane_trajectory_fills_what_is_not_known():
    traj = plane_trajectory(COORDS.tolist(), name="bare")
    assert isinstance(traj, PlaneTrajectory) and traj.name == "bare"
    np.testing.assert_array_equal(traj.steps, np.arange(5.0))
    for key in ("loss", "plane_loss", "residual"):
        assert getattr(traj, key).shape == (5,) and np.isnan(getattr(traj, key)).all()
    assert check_trajectories(traj)[0] is traj  # well-formed: returned as it is
    with pytest.raises(WeightspaceError, match=r"coords: expected shape \(T, 2\)"):
        plane_trajectory(np.ones((4, 3)))
    with pytest.raises(WeightspaceError, match=r"loss: expected length 5"):
        plane_trajectory(COORDS, loss=[1.0, 2.0])


def test_every_surface_renderer_refuses_dicts_and_malformed_trajectories():
    cases = {
        r"trajectories\[0\]: expected a weightspace.landscape.PlaneTrajectory, got dict; "
        r"build one with weightspace.render.plane_trajectory": [{"coords": COORDS}],
        r"trajectories: expected a weightspace.landscape.PlaneTrajectory, got ndarray": COORDS,
        r"trajectories\[0\].plane_loss: expected length 5": [
            PlaneTrajectory("x", np.arange(5), COORDS, np.zeros(5), np.zeros(5), np.zeros(3))
        ],
        r"trajectories\[0\].coords: expected shape \(T, 2\)": [
            PlaneTrajectory("x", np.arange(5), np.ones((5, 3)), *[np.zeros(5)] * 3)
        ],
    }
    renderers = (interactive.surface_figure, static.plot_surface_contour, static.plot_surface_3d)
    for message, trajs in cases.items():
        for draw in renderers:
            with pytest.raises(WeightspaceError, match=message) as err:
                draw(XS, YS, PLANE, trajs)
            assert "\n" not in str(err.value)
