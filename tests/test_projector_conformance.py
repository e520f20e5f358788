"""Every projector keeps scikit-learn's conventions, and the projection package its shape.

Projectors: PCA (each solver), PHATE, t-SNE, UMAP. ``fit`` returns the projector;
``fit_transform(x)`` equals ``fit(x)`` followed by the fitted output (``scores_`` and
``transform(x)`` for PCA, ``embedding_`` for the others, which have no out-of-sample
transform); the same seed gives the same output; outputs are float64 whatever the input dtype
(what every projector's docstring states); ``__init__`` only stores its arguments. Package
shape: public names, private internal modules, no import cycles, short functions.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import numpy as np
import pytest

import weightspace as ws
from weightspace import projection

T, N, RANK = 40, 40, 5
PACKAGE = Path(projection.__file__).parent


def walk(t: int = T, n: int = N, rank: int = RANK, seed: int = 0) -> np.ndarray:
    """A drifting walk in a ``rank``-dimensional subspace: exact for every PCA solver (the
    randomized sketch of k + 10 columns spans the whole range)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(n, rank)))[0].T
    return 2.0 + np.cumsum(rng.normal(size=(t, rank)) + 0.3, axis=0) @ basis


X = walk()

PROJECTORS = {
    "pca-exact": lambda: ws.PCA(3, solver="exact", chunk_size=16),
    "pca-randomized": lambda: ws.PCA(3, solver="randomized", seed=1, chunk_size=16),
    "pca-auto": lambda: ws.PCA(3, solver="auto"),
    "phate": lambda: ws.PHATE(knn=4),
    "tsne": lambda: ws.TSNE(perplexity=5.0, seed=2),
}  # UMAP: one test of its own (its first call compiles numba for ~20 s)


def fitted_output(est) -> np.ndarray:
    return est.scores_ if isinstance(est, ws.PCA) else est.embedding_


@pytest.mark.parametrize("name", PROJECTORS)
def test_fit_transform_equals_fit_then_fitted_output(name):
    expected = PROJECTORS[name]().fit_transform(X)
    est = PROJECTORS[name]()
    assert est.fit(X) is est
    np.testing.assert_array_equal(fitted_output(est), expected)
    if isinstance(est, ws.PCA):  # the out-of-sample route gives the same scores
        np.testing.assert_allclose(est.transform(X), expected, atol=1e-9 * np.abs(X).max())
        runs = est.transform_runs([X[:15], X[15:]])
        np.testing.assert_allclose(np.concatenate(runs), expected, atol=1e-9 * np.abs(X).max())


@pytest.mark.parametrize("name", PROJECTORS)
def test_same_seed_gives_the_same_output(name):
    first = PROJECTORS[name]().fit_transform(X)
    second = PROJECTORS[name]().fit_transform(X)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", PROJECTORS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_is_float64_whatever_the_input_dtype(name, dtype):
    x = X.astype(dtype)
    est = PROJECTORS[name]()
    y = est.fit_transform(x)
    assert y.dtype == np.float64 and y.shape == (T, est.n_components)
    if isinstance(est, ws.PCA):
        assert est.transform(x).dtype == np.float64
        assert est.components_.dtype == np.float64
        np.testing.assert_allclose(y, PROJECTORS[name]().fit_transform(X), atol=1e-4)


@pytest.mark.slow
def test_umap_conforms_in_two_fits():
    pytest.importorskip("umap")
    import torch

    x32 = X.astype(np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first = ws.UMAP(n_neighbors=5, seed=3).fit_transform(x32)
        # numba's OpenMP layer would leave torch on every core: the caller's count is kept
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    est = ws.UMAP(n_neighbors=5, seed=3)
    assert est.fit(x32) is est
    np.testing.assert_array_equal(est.embedding_, first)  # fit == fit_transform; same seed
    assert first.dtype == np.float64 and first.shape == (T, 2)


CLASSES = [ws.PCA, ws.PHATE, ws.TSNE, ws.UMAP]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_init_only_stores_its_arguments(cls):
    params = inspect.signature(cls).parameters
    kinds = {p.kind for p in params.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds  # every setting named in the signature
    assert inspect.Parameter.VAR_POSITIONAL not in kinds
    assert vars(cls()) == {name: p.default for name, p in params.items()}
    nonsense = {name: f"nonsense-{name}" for name in params}
    est = cls(**nonsense)  # nothing checked yet
    assert vars(est) == nonsense
    with pytest.raises(ws.WeightspaceError) as e:  # fit checks, in one line
        est.fit(X)
    assert "\n" not in str(e.value) and str(e.value).split(":")[0] in params


# ---------------------------------------------------------------------------- package shape
PUBLIC = {
    "PCA", "PHATE", "TSNE", "UMAP", "NullComparison", "RandomWalkNull",
    "compare_to_random_walk", "distance_matrix", "gram_matrix", "iter_blocks",
    "random_walk_null", "trajectory_preservation", "trustworthiness",
}  # fmt: skip


def modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def test_public_surface_and_private_internals():
    assert set(projection.__all__) == PUBLIC
    assert all(getattr(projection, name) is not None for name in PUBLIC)
    assert {"PCA", "PHATE", "TSNE", "UMAP", "random_walk_null"} <= set(dir(ws))
    public = [m for m in modules() if not m.startswith("_")]
    assert public == ["embed", "nulls", "pca", "phate"]
    for name in public:
        mod = importlib.import_module(f"weightspace.projection.{name}")
        for item in mod.__all__:
            assert getattr(mod, item).__module__ == mod.__name__, (name, item)
    for gone in ("gram", "randomized"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"weightspace.projection.{gone}")


def sibling_imports(module: str) -> tuple[set[str], list[str]]:
    """Sibling modules that ``module`` imports anywhere (TYPE_CHECKING and function bodies
    included), and the private attributes it reads off other objects."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found, private = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            owner = node.value
            if not node.attr.startswith("__") and not (
                isinstance(owner, ast.Name) and owner.id in ("self", "cls")
            ):
                private.append(node.attr)
    return {f.split(".")[0] for f in found}, private


def test_the_randomized_solver_depends_on_no_pca():
    assert sibling_imports("_randomized")[0] <= {"_gram", "_stream"}  # no PCA behind it
    assert sibling_imports("_randomized")[1] == []  # nobody's private attributes
