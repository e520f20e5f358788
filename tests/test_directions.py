import numpy as np
import pytest
import torch

import weightspace as ws
from weightspace.errors import LayoutMismatchError, WeightspaceError
from weightspace.landscape import plane_extent


@pytest.fixture(scope="module")
def cnn():
    """The digits CNN with BatchNorm, in float64: conv/linear filters and 1-D tensors."""
    model = ws.zoo.problem("digits-cnn-bn", seed=0).model.double()
    layout = ws.ParamLayout.from_module(model)
    return model, layout, layout.flatten(model)


def filters(vec, layout):
    """(name, is_filter, rows) with each filter (slice along dim 0) flattened, via the views."""
    for name, t in layout.unflatten(vec).items():
        yield name, t.ndim > 1, t.reshape(t.shape[0], -1) if t.ndim > 1 else t[None]


def test_filter_normalisation_gives_every_filter_its_weight_norm(cnn):
    _, layout, theta = cnn
    d = ws.random_directions(theta, layout, n=2, normalization="filter", seed=0)
    assert d.vectors.shape == (2, layout.numel) and d.vectors.dtype == torch.float64
    n_filters = 0
    for k in range(2):
        for (name, is_filter, rows), (_, _, w_rows) in zip(
            filters(d[k], layout), filters(theta, layout)
        ):
            if is_filter:
                torch.testing.assert_close(rows.norm(dim=1), w_rows.norm(dim=1), rtol=1e-9, atol=0)
                n_filters += rows.shape[0]
            else:  # biases and BatchNorm affine parameters
                assert torch.count_nonzero(rows) == 0, name
    # conv 16 + 32, linear 64 + 10 filters, for both directions
    assert n_filters == 2 * (16 + 32 + 64 + 10)


def test_ignore_none_scales_1d_tensors_and_layer_normalisation(cnn):
    _, layout, theta = cnn
    d = ws.random_directions(theta, layout, n=1, ignore=None, seed=1)[0]
    for name, sl, is_filter in zip(layout.names, layout.slices, layout.is_filter):
        if not is_filter:
            assert d[sl].norm().item() == pytest.approx(theta[sl].norm().item(), rel=1e-9), name
    lay = ws.random_directions(theta, layout, n=1, normalization="layer", ignore=None, seed=1)[0]
    for sl in layout.slices:
        assert lay[sl].norm().item() == pytest.approx(theta[sl].norm().item(), rel=1e-9)
    raw = ws.random_directions(theta, layout, n=1, normalization="none", ignore=None, seed=1)[0]
    # "none" is the Gaussian draw itself: the same draw that "layer" rescaled
    for sl in layout.slices:
        ratio = lay[sl] / raw[sl]
        torch.testing.assert_close(ratio, ratio[0].expand_as(ratio), rtol=1e-9, atol=0)


def test_seeds_reproduce_and_differ(cnn):
    _, layout, theta = cnn
    a = ws.random_directions(theta, layout, seed=3)
    b = ws.random_directions(theta, layout, seed=3)
    c = ws.random_directions(theta, layout, seed=4)
    g = ws.random_directions(theta, layout, seed=torch.Generator().manual_seed(3))
    assert torch.equal(a.vectors, b.vectors) and torch.equal(a.vectors, g.vectors)
    assert not torch.equal(a.vectors, c.vectors)
    assert not torch.equal(a[0], a[1])
    fresh = ws.random_directions(theta, layout)
    assert isinstance(fresh.metadata["seed"], int)  # recorded, so the draw can be repeated
    again = ws.random_directions(theta, layout, seed=fresh.metadata["seed"])
    assert torch.equal(fresh.vectors, again.vectors)


def test_cosine_and_orthogonalisation(cnn):
    _, layout, theta = cnn
    d = ws.random_directions(theta, layout, seed=0)
    u, v = d[0], d[1]
    assert d.cosine == pytest.approx(float(u @ v / (u.norm() * v.norm())), rel=1e-12)
    o = ws.random_directions(theta, layout, seed=0, orthogonalize=True)
    assert abs(o.cosine) < 1e-12
    assert o.norms == pytest.approx(d.norms, rel=1e-12)
    assert torch.equal(o[0], d[0])
    assert o.describe()["cosine"] == o.cosine and o.describe()["kind"] == "random"


def test_normalize_direction_matches_a_loop_over_filters(cnn):
    """Li et al.'s rule, written independently as a loop over filters."""
    _, layout, theta = cnn
    g = torch.Generator().manual_seed(5)
    raw = torch.randn(layout.numel, generator=g, dtype=torch.float64)
    out = ws.normalize_direction(raw, theta, layout, "filter", "biasbn")
    ref = raw.clone()
    for sl, shape in zip(layout.slices, layout.shapes):
        if len(shape) == 1:
            ref[sl] = 0
            continue
        dr, wr = ref[sl].view(shape[0], -1), theta[sl].view(shape[0], -1)
        for i in range(shape[0]):
            dr[i] = dr[i] * wr[i].norm() / (dr[i].norm() + 1e-10)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=0)
    assert torch.equal(raw, torch.randn(layout.numel, generator=g.manual_seed(5), dtype=raw.dtype))


def test_vectors_and_files_become_directions(cnn, tmp_path):
    _, layout, theta = cnn
    g = torch.Generator().manual_seed(0)
    pcs = torch.randn(2, layout.numel, generator=g, dtype=torch.float64)
    d = ws.directions_from_vectors(pcs.numpy(), kind="pca", metadata={"explained": [0.6, 0.2]})
    assert torch.equal(d.vectors, pcs) and d.kind == "pca" and d.metadata["explained"]
    fn = ws.directions_from_vectors(
        pcs, theta=theta, layout=layout, normalization="filter", ignore="biasbn"
    )
    torch.testing.assert_close(
        fn[1], ws.normalize_direction(pcs[1], theta, layout, "filter", "biasbn")
    )
    np.save(tmp_path / "pcs.npy", pcs.numpy())
    loaded = ws.load_directions(tmp_path / "pcs.npy")
    assert torch.equal(loaded.vectors, pcs) and loaded.kind == "file"
    np.save(tmp_path / "obj.npy", np.array([object()]), allow_pickle=True)
    with pytest.raises(WeightspaceError, match="obj.npy"):
        ws.load_directions(tmp_path / "obj.npy")
    with pytest.raises(WeightspaceError, match="does not exist"):
        ws.load_directions(tmp_path / "missing.npy")
    with pytest.raises(LayoutMismatchError, match=r"shape \(38378,\)"):
        ws.directions_from_vectors(np.ones((2, 5)), theta=theta, layout=layout)
    with pytest.raises(WeightspaceError, match="zero-norm"):
        ws.directions_from_vectors(np.zeros((1, 7)))


def test_zero_norm_after_normalisation_is_a_one_line_error():
    layout = ws.ParamLayout(("bias",), ((4,),))
    with pytest.raises(WeightspaceError) as e:
        ws.random_directions(torch.ones(4), layout, seed=0)
    assert "zero norm" in str(e.value) and "ignore=None" in str(e.value)
    assert "\n" not in str(e.value)


def test_interpolation_and_plane_through_three_points():
    g = torch.Generator().manual_seed(2)
    a, b, c = torch.randn(3, 50, generator=g, dtype=torch.float64)
    d = ws.interpolation_directions(a, b)
    assert torch.equal(d[0], b - a) and len(d) == 1
    plane = ws.plane_through(a, b, c)
    coords, res = ws.plane_coordinates(torch.stack([a, b, c]), a, plane[0], plane[1])
    np.testing.assert_allclose(coords, [[0, 0], [1, 0], [0, 1]], atol=1e-12)
    assert res.max() < 1e-12
    ortho = ws.plane_through(a, b, c, orthogonalize=True)
    assert abs(ortho.cosine) < 1e-12 and ortho.norms[1] == pytest.approx(ortho.norms[0])
    coords, res = ws.plane_coordinates(c, a, ortho[0], ortho[1])
    # c - a = x*(b - a) + y*e2 with e2 of length |b - a|, orthogonal to b - a
    u, w = b - a, c - a
    x = float(w @ u / (u @ u))
    y = float((w - x * u).norm() / u.norm())
    np.testing.assert_allclose(coords[0], [x, y], rtol=1e-10)
    with pytest.raises(WeightspaceError, match="zero norm"):
        ws.interpolation_directions(a, a.clone())
    with pytest.raises(WeightspaceError, match="collinear"):
        ws.plane_through(a, b, 2 * b - a)


def test_plane_coordinates_recover_known_coefficients_and_residuals():
    g = torch.Generator().manual_seed(7)
    n = 200
    c = torch.randn(n, generator=g, dtype=torch.float64)
    d1 = 3.0 * torch.randn(n, generator=g, dtype=torch.float64)  # not unit, not orthogonal
    d2 = 0.5 * d1 + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    ab = torch.tensor([[0.0, 0.0], [1.0, -2.0], [-0.3, 0.7], [2.5, 4.0]], dtype=torch.float64)
    on = c + ab[:, :1] * d1 + ab[:, 1:] * d2
    coords, res = ws.plane_coordinates(on, c, d1, d2)
    np.testing.assert_allclose(coords, ab.numpy(), rtol=1e-10, atol=1e-10)
    assert res.max() < 1e-10
    # a known excursion e orthogonal to the plane, of length r
    q, _ = torch.linalg.qr(
        torch.stack([d1, d2, torch.randn(n, generator=g, dtype=torch.float64)]).T
    )
    e = q[:, 2]
    r = 0.8
    off = c + 1.5 * d1 - 0.5 * d2 + r * e
    coords, res = ws.plane_coordinates(off.numpy(), c.numpy(), d1.numpy(), d2.numpy())
    np.testing.assert_allclose(coords[0], [1.5, -0.5], rtol=1e-10)
    assert res[0] == pytest.approx(r / float((off - c).norm()), rel=1e-10)
    with pytest.raises(WeightspaceError, match="parallel"):
        ws.plane_coordinates(on, c, d1, -2 * d1)
    with pytest.raises(LayoutMismatchError):
        ws.plane_coordinates(on[:, :10], c, d1, d2)


def test_plane_coordinates_of_a_recorded_run(recorded_run):
    path, thetas = recorded_run
    traj = ws.Trajectory.load(path)
    c = thetas[-1].double()
    d1, d2 = (thetas[0] - thetas[-1]).double(), torch.zeros_like(c)
    d2[0] = 1.0
    coords, res = ws.plane_coordinates(traj, c, d1, d2)
    ref, ref_res = ws.plane_coordinates(thetas.double(), c, d1, d2)
    np.testing.assert_allclose(coords, ref, atol=1e-6)
    np.testing.assert_allclose(res, ref_res, atol=1e-6)
    assert coords.shape == (6, 2) and res[-1] == 0.0


def test_plane_extent_covers_every_point_and_the_centre():
    pts = [np.array([[0.5, 1.0], [2.0, 3.0]]), np.array([[1.0, -1.0]])]
    (x0, x1), (y0, y1) = plane_extent(pts, margin=0.1)  # centred on the centre (0, 0)
    assert x0 == pytest.approx(-2.2) and x1 == pytest.approx(2.2)
    assert y0 == pytest.approx(-3.3) and y1 == pytest.approx(3.3)
    (x0, x1), _ = plane_extent(np.zeros((3, 2)), margin=0.0)
    assert (x0, x1) == (-1.0, 1.0)
