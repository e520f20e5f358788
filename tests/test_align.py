"""Permutation alignment (weightspace.between.align): a network and a copy of it with its hidden
units shuffled by hand are aligned back exactly, and the aligned copy computes the same
function; weight matching never lowers its objective; unsupported models fail on one line."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

import weightspace as ws
from weightspace.between import Alignment, PermutationSpec, align, permutation_spec


# ----------------------------------------------------------------------------- models
class Residual(nn.Module):
    """A stem, one residual block (two convs with BatchNorm), global pooling, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        y = nn.functional.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(y)) + x)
        return self.head(x.mean((2, 3)))


class ResidualMLP(nn.Module):
    """A residual stream whose inner layer maps the stream to itself (both axes in one group)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(5, 7)
        self.mix = nn.Linear(7, 7)
        self.out = nn.Linear(7, 3)

    def forward(self, x):
        x = self.inp(x)
        x = x + self.mix(torch.tanh(x))
        return self.out(x)


def mlp():
    return nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3)
    )


def cnn_bn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 12, 3, padding=1),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(12 * 16, 10),
        nn.ReLU(),
        nn.Linear(10, 4),
    )


def block(path, attrs, axis=0, n=1):
    return [(path, a, axis, n) for a in attrs]


BN = ("weight", "bias", "running_mean", "running_var")
# by hand, independently of permutation_spec: group -> (units, what each unit indexes)
MOVES = {
    "mlp": {
        "P_0": (16, block("0", ("weight", "bias")) + block("2", ("weight",), 1)),
        "P_2": (12, block("2", ("weight", "bias")) + block("4", ("weight",), 1)),
    },
    "cnn_bn": {
        "P_0": (8, block("0", ("weight", "bias")) + block("1", BN) + block("4", ["weight"], 1)),
        "P_4": (
            12,
            block("4", ("weight", "bias")) + block("5", BN) + block("8", ["weight"], 1, 16),
        ),
        "P_8": (10, block("8", ("weight", "bias")) + block("10", ("weight",), 1)),
    },
    "residual": {
        "P_stem": (
            8,
            block("stem", ("weight", "bias"))
            + block("bn0", BN)
            + block("conv1", ["weight"], 1)
            + block("conv2", ("weight", "bias"))
            + block("bn2", BN)
            + block("head", ["weight"], 1),
        ),
        "P_conv1": (
            6,
            block("conv1", ("weight", "bias")) + block("bn1", BN) + block("conv2", ["weight"], 1),
        ),
    },
    "residual_mlp": {
        "P_inp": (
            7,
            block("inp", ("weight", "bias"))
            + block("mix", ("weight", "bias"))
            + block("mix", ["weight"], 1)
            + block("out", ["weight"], 1),
        ),
    },
}
MODELS = {"mlp": mlp, "cnn_bn": cnn_bn, "residual": Residual, "residual_mlp": ResidualMLP}
INPUTS = {"mlp": (6,), "cnn_bn": (3, 8, 8), "residual": (3, 5, 5), "residual_mlp": (5,)}


def build(kind, seed=0, dtype=torch.float64):
    """A model with random weights and (for BatchNorm) random running statistics."""
    g = torch.Generator().manual_seed(seed)
    model = MODELS[kind]().to(dtype)
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g, dtype=dtype) * 0.5)
        for name, buf in model.named_buffers():
            if name.endswith("running_var"):
                buf.abs_().add_(0.5)
    return model.eval()


def shuffled(model, kind, seed=1):
    """A copy of ``model`` with every hidden group shuffled: B's unit i is A's unit perm[i]."""
    g = torch.Generator().manual_seed(seed)
    twin, perms = copy.deepcopy(model), {}
    with torch.no_grad():
        for group, (units, targets) in MOVES[kind].items():
            perm = perms[group] = torch.randperm(units, generator=g)
            for path, attr, axis, n in targets:
                t = getattr(twin.get_submodule(path), attr)
                split = (*t.shape[:axis], units, n, *t.shape[axis + 1 :])
                t.copy_(t.reshape(split).index_select(axis, perm).reshape(t.shape))
    return twin, perms


def data(kind, n=64, dtype=torch.float64, seed=2):
    return torch.randn(
        (n, *INPUTS[kind]), generator=torch.Generator().manual_seed(seed), dtype=dtype
    )


def flat(model):
    layout, buffers = ws.ParamLayout.from_module(model), ws.BufferLayout.from_module(model)
    return layout, buffers, layout.flatten(model), buffers.flatten(model)


def outputs(model, layout, buffer_layout, theta, bufs, x):
    state = {**layout.unflatten(theta), **buffer_layout.unflatten(bufs, dtype=theta.dtype)}
    with torch.no_grad():
        return functional_call(model, state, (x,))


# ----------------------------------------------------------------------------- spec
def test_spec_of_an_mlp_names_each_hidden_layer_and_never_the_input_or_logits():
    spec = permutation_spec(mlp())
    assert spec.axes == {
        "P_0": (("0.weight", 0, 1), ("0.bias", 0, 1), ("2.weight", 1, 1)),
        "P_2": (("2.weight", 0, 1), ("2.bias", 0, 1), ("4.weight", 1, 1)),
    }
    assert spec.buffer_axes == {}


def test_spec_of_a_cnn_moves_flattened_channels_in_blocks_and_batchnorm_stats():
    model = cnn_bn()
    spec = permutation_spec(model, torch.zeros(2, 3, 8, 8))
    assert ("8.weight", 1, 16) in spec.axes["P_4"]
    assert spec.buffer_axes["P_0"] == (("1.running_mean", 0, 1), ("1.running_var", 0, 1))
    assert set(spec.axes) == {"P_0", "P_4", "P_8"}
    assert spec.validate(ws.ParamLayout.from_module(model), ws.BufferLayout.from_module(model)) == {
        "P_0": 8,
        "P_4": 12,
        "P_8": 10,
    }


def test_spec_of_a_residual_block_unites_both_operands_of_the_sum():
    spec = permutation_spec(Residual(), torch.zeros(2, 3, 5, 5))
    assert set(spec.axes) == {"P_stem", "P_conv1"}
    names = {e[:2] for e in spec.axes["P_stem"]}
    assert {
        ("stem.weight", 0),
        ("conv2.weight", 0),
        ("conv1.weight", 1),
        ("head.weight", 1),
    } <= names


def test_functional_layers_are_traced_like_modules():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1, self.b1 = nn.Parameter(torch.randn(9, 4)), nn.Parameter(torch.randn(9))
            self.w2 = nn.Parameter(torch.randn(2, 9))

        def forward(self, x):
            h = nn.functional.gelu(nn.functional.linear(x, self.w1, self.b1))
            return nn.functional.linear(h, self.w2)

    spec = permutation_spec(Functional())
    assert spec.axes == {"P_w1": (("w1", 0, 1), ("b1", 0, 1), ("w2", 1, 1))}


def test_a_residual_sum_with_the_input_features_fixes_those_units():
    class InputResidual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.head(torch.relu(self.fc(x)) + x)

    assert permutation_spec(InputResidual()).axes == {}


# ----------------------------------------------------------------------------- weight matching
@pytest.mark.parametrize("kind", ["mlp", "cnn_bn", "residual", "residual_mlp"])
def test_weight_matching_undoes_a_shuffle_and_keeps_the_function(kind):
    a_model = build(kind)
    b_model, perms = shuffled(a_model, kind)
    layout, buffer_layout, theta_a, buf_a = flat(a_model)
    _, _, theta_b, buf_b = flat(b_model)
    x = data(kind)
    result = align(a_model, theta_a, theta_b, layout=layout, data=x)

    assert set(result.perms) == set(perms)
    for group, perm in perms.items():
        np.testing.assert_array_equal(result.perms[group], perm.numpy())
    assert result.distance_before > 1 and result.distance_after < 1e-12
    aligned, aligned_buf = result.apply(theta_b), result.apply_buffers(buf_b)
    assert torch.equal(aligned, theta_a) and torch.equal(aligned_buf, buf_a)
    out_b = outputs(a_model, layout, buffer_layout, theta_b, buf_b, x)
    out_aligned = outputs(a_model, layout, buffer_layout, aligned, aligned_buf, x)
    torch.testing.assert_close(out_aligned, out_b, rtol=0, atol=1e-12)
    assert np.all(np.diff(result.objective_history) >= 0)
    assert result.metadata["converged"]


def test_float32_alignment_keeps_the_function_to_float32_precision():
    a_model = build("cnn_bn", dtype=torch.float32)
    b_model, perms = shuffled(a_model, "cnn_bn")
    layout, buffer_layout, theta_a, _ = flat(a_model)
    _, _, theta_b, buf_b = flat(b_model)
    x = data("cnn_bn", dtype=torch.float32)
    spec = permutation_spec(a_model, x[:2])
    result = align(spec, theta_a, theta_b, layout=layout, buffer_layout=buffer_layout)
    np.testing.assert_array_equal(result.perms["P_4"], perms["P_4"].numpy())
    out_b = outputs(a_model, layout, buffer_layout, theta_b, buf_b, x)
    moved = outputs(
        a_model, layout, buffer_layout, result.apply(theta_b), result.apply_buffers(buf_b), x
    )
    assert float((moved - out_b).abs().max()) <= 1e-6 * float(out_b.abs().max())  # ~20


@pytest.mark.parametrize("kind", ["mlp", "cnn_bn", "residual", "residual_mlp"])
def test_independent_networks_get_closer_and_the_objective_never_decreases(kind):
    a_model, b_model = build(kind, seed=0), build(kind, seed=5)
    layout, _, theta_a, _ = flat(a_model)
    theta_b = layout.flatten(b_model)
    result = align(a_model, theta_a, theta_b, layout=layout, data=data(kind, n=4), seed=3)
    history = result.objective_history
    assert history.ndim == 1 and len(history) > 1 and np.all(np.diff(history) >= 0)
    assert result.distance_after <= result.distance_before
    aligned = result.apply(theta_b)
    # the recorded objective is <θ_a, P θ_b> of the result; distances follow from it
    assert history[-1] == pytest.approx(float(theta_a @ aligned), rel=1e-9)
    expected = np.sqrt(float(theta_a @ theta_a + theta_b @ theta_b) - 2 * history[-1])
    assert result.distance_after == pytest.approx(expected, rel=1e-9)


def test_the_seed_fixes_the_result_and_arrays_come_back_as_arrays():
    a_model, b_model = build("mlp", seed=0), build("mlp", seed=7)
    layout = ws.ParamLayout.from_module(a_model)
    theta_a, theta_b = layout.flatten(a_model).numpy(), layout.flatten(b_model).numpy()
    one = align(a_model, theta_a, theta_b, layout=layout, seed=4)
    two = align(a_model, theta_a, theta_b, layout=layout, seed=4)
    assert all(np.array_equal(one.perms[g], two.perms[g]) for g in one.perms)
    moved = one.apply(theta_b)
    assert isinstance(moved, np.ndarray) and moved.shape == theta_b.shape
    assert np.array_equal(moved, one.apply(torch.from_numpy(theta_b)).numpy())
    assert isinstance(one, Alignment) and one.method == "weights"


# ----------------------------------------------------------------------------- activations
@pytest.mark.parametrize("kind", ["mlp", "cnn_bn", "residual"])
def test_activation_matching_undoes_a_shuffle(kind):
    a_model = build(kind)
    b_model, perms = shuffled(a_model, kind)
    layout, _, theta_a, buf_a = flat(a_model)
    _, _, theta_b, buf_b = flat(b_model)
    x = data(kind, n=128)
    result = align(
        a_model,
        theta_a,
        theta_b,
        layout=layout,
        method="activations",
        data=(x, None),
        buffers_a=buf_a,
        buffers_b=buf_b,
    )
    for group, perm in perms.items():
        np.testing.assert_array_equal(result.perms[group], perm.numpy())
    assert result.distance_after < 1e-12 and result.method == "activations"
    assert result.objective_history[1] >= result.objective_history[0]


# ----------------------------------------------------------------------------- errors
def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


def test_attention_is_refused_on_one_line_naming_the_module():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            h = self.fc(x)
            return self.head(self.attn(h, h, h)[0])

    with pytest.raises(ws.WeightspaceError) as e:
        permutation_spec(Attention())
    text = one_line(e)
    assert "'attn'" in text and "MultiheadAttention" in text and "PermutationSpec" in text


def test_a_reshape_that_mixes_units_is_refused():
    class Mixer(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.head = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            h = self.fc(x)
            return self.head(h.view(-1, 2, 4).transpose(1, 2).reshape(-1, 8))

    with pytest.raises(ws.WeightspaceError) as e:
        permutation_spec(Mixer(), torch.zeros(2, 4))
    assert "(node view)" in one_line(e)


def test_flatten_after_a_conv_needs_an_example_input():
    with pytest.raises(ws.WeightspaceError) as e:
        permutation_spec(cnn_bn())
    assert "example_input" in one_line(e) and "'7'" in one_line(e)


def test_a_spec_with_an_unknown_name_or_mismatched_sizes_names_the_tensor():
    layout = ws.ParamLayout.from_module(mlp())
    with pytest.raises(ws.WeightspaceError) as e:
        PermutationSpec({"P": [("0.weight", 0), ("9.weight", 1)]}).validate(layout)
    assert "'9.weight'" in one_line(e)
    with pytest.raises(ws.WeightspaceError) as e:
        PermutationSpec({"P": [("0.weight", 0), ("4.weight", 1)]}).validate(layout)
    assert "'4.weight'" in one_line(e) and "12 units" in one_line(e)
    theta = layout.flatten(mlp())
    with pytest.raises(ws.WeightspaceError) as e:
        align(PermutationSpec({"P": [("fc.weight", 0)]}), theta, theta, layout=layout)
    assert "'fc.weight'" in one_line(e)
    with pytest.raises(ws.WeightspaceError) as e:
        PermutationSpec({"P": [("0.weight", 0)], "Q": [("0.weight", 0)]})
    assert "'0.weight'" in one_line(e)


def test_activation_matching_needs_a_model_data_and_buffers():
    model = build("cnn_bn")
    layout, _, theta, _ = flat(model)
    spec = permutation_spec(model, data("cnn_bn", n=2))
    with pytest.raises(ws.WeightspaceError) as e:
        align(spec, theta, theta, layout=layout, method="activations", data=data("cnn_bn"))
    assert "method='activations'" in one_line(e)
    with pytest.raises(ws.WeightspaceError) as e:
        align(model, theta, theta, layout=layout, method="activations", data=data("cnn_bn"))
    assert one_line(e).startswith("buffers_a:")
    with pytest.raises(ws.WeightspaceError) as e:
        align(model, theta, theta[:-1], layout=layout)
    assert one_line(e).startswith("theta_b:")
