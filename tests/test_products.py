"""Linear maps through the CPU's faster float32 product kernel (mska_core.backbones.products)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mska_core.backbones import products
from mska_core.backbones.products import RoutedLinear, linear, route_linears, routes, set_cpu_products


@pytest.fixture
def onednn():
    before = products._choice
    set_cpu_products("onednn")
    yield
    set_cpu_products(before)


def test_a_routed_linear_map_gives_f_linear_s_values_and_gradients(onednn) -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 130, 96, dtype=torch.float32, requires_grad=True)
    weight = torch.randn(192, 96, requires_grad=True)
    bias = torch.randn(192, requires_grad=True)
    assert routes(x, weight)
    grad = torch.randn(4, 130, 192)
    ours = linear(x, weight, bias)
    ours.backward(grad)
    ours_grads = [t.grad.clone() for t in (x, weight, bias)]
    for t in (x, weight, bias):
        t.grad = None
    theirs = F.linear(x, weight, bias)
    theirs.backward(grad)
    assert ours.shape == theirs.shape and ours.is_contiguous()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    for mine, reference in zip(ours_grads, (x.grad, weight.grad, bias.grad)):
        torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-4)


def test_small_products_other_dtypes_and_blas_keep_f_linear(onednn) -> None:
    weight = torch.randn(192, 96)
    assert not routes(torch.randn(8, 96), weight)  # few rows
    assert not routes(torch.randn(1000, 16), torch.randn(16, 16))  # little work
    assert not routes(torch.randn(1000, 96, dtype=torch.float64), weight.double())
    set_cpu_products("blas")
    assert not routes(torch.randn(1000, 96), weight)


def test_route_linears_keeps_parameters_state_dict_and_outputs(onednn) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(96, 192), nn.GELU(), nn.Linear(192, 96))
    x = torch.randn(512, 96)
    before, state = model(x), {k: v.clone() for k, v in model.state_dict().items()}
    assert route_linears(model) is model
    assert all(type(m) is RoutedLinear for m in (model[0], model[2]))
    assert model.state_dict().keys() == state.keys()
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_an_unknown_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="blas, onednn"):
        set_cpu_products("mkl")


def test_an_unknown_environment_choice_is_a_config_error_naming_the_variable(monkeypatch) -> None:
    from mska_core.errors import ConfigError

    monkeypatch.setattr(products, "_choice", "mkl")
    with pytest.raises(ConfigError, match="MSKA_CPU_PRODUCTS='mkl'.*auto, blas, onednn"):
        products.cpu_products()


def test_auto_measures_once_and_names_a_kernel() -> None:
    before = products._choice
    try:
        set_cpu_products("auto")
        assert products.cpu_products() in ("blas", "onednn")
        assert products._measured is not None
    finally:
        set_cpu_products(before)
