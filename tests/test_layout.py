import pytest
import torch

import weightspace as ws
from weightspace.errors import LayoutMismatchError, WeightspaceError


def cnn() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3),
        torch.nn.BatchNorm2d(3),
        torch.nn.Flatten(),
        torch.nn.Linear(12, 2),
    )


def test_flatten_unflatten_round_trip_and_views():
    model = cnn()
    layout = ws.ParamLayout.from_module(model)
    theta = layout.flatten(model)
    assert theta.shape == (sum(p.numel() for p in model.parameters()),) == (layout.numel,)
    parts = layout.unflatten(theta)
    for name, p in model.named_parameters():
        assert torch.equal(parts[name], p.detach())
        assert parts[name].data_ptr() >= theta.data_ptr()  # a view into theta
    parts["0.weight"][0, 0, 0, 0] = 123.0
    assert theta[0] == 123.0
    assert torch.equal(layout.flatten(layout.unflatten(theta)), theta)


def test_filters_and_one_dimensional_tensors():
    layout = ws.ParamLayout.from_module(cnn())
    assert dict(zip(layout.names, layout.is_filter)) == {
        "0.weight": True,
        "0.bias": False,
        "1.weight": False,
        "1.bias": False,
        "3.weight": True,
        "3.bias": False,
    }
    sl = layout.slice_of("3.weight")
    assert sl.stop - sl.start == 24


def test_name_filter_and_empty_match():
    model = cnn()
    assert ws.ParamLayout.from_module(model, include="3.*").names == ("3.weight", "3.bias")
    assert ws.ParamLayout.from_module(model, include=["0.weight", "3.bias"]).numel == 27 + 2
    with pytest.raises(WeightspaceError, match="matched no trainable parameter"):
        ws.ParamLayout.from_module(model, include="nope.*")


def test_mismatch_names_the_tensor_and_both_shapes():
    a = ws.ParamLayout.from_module(torch.nn.Linear(3, 2))
    b = ws.ParamLayout.from_module(torch.nn.Linear(4, 2))
    with pytest.raises(LayoutMismatchError, match=r"'weight' \(2, 3\).*'weight' \(2, 4\)"):
        a.check_compatible(b)
    with pytest.raises(
        LayoutMismatchError, match=r"tensor 'weight': layout has shape \(2, 3\), got \(2, 4\)"
    ):
        a.flatten(torch.nn.Linear(4, 2))
    with pytest.raises(LayoutMismatchError, match="expected a flat vector of shape"):
        a.unflatten(torch.zeros(5))
    c = ws.ParamLayout.from_module(torch.nn.Linear(3, 2, bias=False))
    with pytest.raises(LayoutMismatchError, match="'bias'"):
        a.check_compatible(c)


def test_serialisation_round_trip():
    layout = ws.ParamLayout.from_module(cnn())
    again = ws.ParamLayout.from_dict(layout.to_dict())
    assert again == layout and again.offsets == layout.offsets
