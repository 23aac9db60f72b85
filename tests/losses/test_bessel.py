"""log_bessel_iv and log_iv_minus_nu_log_x against mpmath (arbitrary precision), gradients, edge cases."""
import math

import mpmath
import pytest
import torch

from kcl_models.losses import log_bessel_iv
from kcl_models.losses._bessel import _g_and_q, log_iv_minus_nu_log_x

# ProCo's orders: nu = p/2 - 1 for p = 128 (CIFAR) and p = 1024 (ImageNet-LT, iNat).
PAPER_NUS = (63.0, 511.0)
GRID = torch.logspace(-3, 5, 120, dtype=torch.float64)  # 1e-3 .. 1e5


def _mp_log_iv(nu: float, x: float) -> float:
    return float(mpmath.log(mpmath.besseli(nu, x)))


def _mp_ratio(nu: float, x: float) -> float:
    return float(mpmath.besseli(nu + 1, x) / mpmath.besseli(nu, x))


@pytest.fixture(autouse=True, scope="module")
def _precision():
    with mpmath.workdps(40):
        yield


def _assert_log_close(ours: torch.Tensor, ref: list[float], tol: float) -> None:
    """Relative error ``tol``, or absolute where ``|value| < 1`` (the issue's criterion)."""
    ref_t = torch.tensor(ref, dtype=torch.float64)
    err = (ours - ref_t).abs() / ref_t.abs().clamp(min=1.0)
    worst = int(err.argmax())
    assert err.max() < tol, f"error {err.max():.2e} at index {worst}: ours {ours[worst]}, mpmath {ref_t[worst]}"


@pytest.mark.parametrize("nu", PAPER_NUS)
def test_matches_mpmath_over_the_paper_range(nu):
    xs = torch.cat([GRID, torch.tensor([nu, nu + 0.5, 2000.0, 4850.0, 3e4], dtype=torch.float64)])
    ref = [_mp_log_iv(nu, x) for x in xs.tolist()]
    # The issue asks for 1e-6; the expansion gives ~1e-12 (a loss of accuracy shows up here first).
    _assert_log_close(log_bessel_iv(nu, xs), ref, 1e-10)


@pytest.mark.parametrize("nu", PAPER_NUS)
def test_ratio_and_gradient_match_mpmath(nu):
    xs = GRID[::4].clone().requires_grad_()
    (grad,) = torch.autograd.grad(log_bessel_iv(nu, xs).sum(), xs)
    ratio = [_mp_ratio(nu, x) for x in xs.tolist()]
    expected = torch.tensor(ratio, dtype=torch.float64) + nu / xs.detach()  # d/dx log I = I_{nu+1}/I_nu + nu/x
    torch.testing.assert_close(grad, expected, rtol=1e-9, atol=0)
    # The same ratio drives log I_nu(x) - nu log x (ProCo's logits): its derivative is the ratio alone.
    x2 = xs.detach().clone().requires_grad_()
    (grad2,) = torch.autograd.grad(log_iv_minus_nu_log_x(nu, x2).sum(), x2)
    torch.testing.assert_close(grad2, torch.tensor(ratio, dtype=torch.float64), rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("nu", [0.0, 0.5, 1.0, 7.0, 24.6])
def test_small_orders_use_the_downward_recurrence(nu):
    xs = torch.logspace(-3, 5, 25, dtype=torch.float64)
    _assert_log_close(log_bessel_iv(nu, xs), [_mp_log_iv(nu, x) for x in xs.tolist()], 1e-10)
    g, q = _g_and_q(nu, xs)
    ratio = torch.tensor([_mp_ratio(nu, x) for x in xs.tolist()], dtype=torch.float64)
    torch.testing.assert_close(xs * q, ratio, rtol=1e-9, atol=0)


def test_limits_at_zero_and_far_out():
    nu = 63.0
    x = torch.tensor([0.0, 1e-300, 1e300], dtype=torch.float64)
    g, q = _g_and_q(nu, x)
    at_zero = -nu * math.log(2) - math.lgamma(nu + 1)  # I_nu(x) ~ (x/2)^nu / Gamma(nu+1)
    assert g[0].item() == pytest.approx(at_zero, rel=1e-13) and g[1].item() == pytest.approx(at_zero, rel=1e-13)
    assert q[0].item() == pytest.approx(1 / (2 * nu + 2), rel=1e-12)  # A(x)/x -> 1/(2 nu + 2)
    assert g[2].item() == pytest.approx(1e300, rel=1e-12) and math.isfinite(q[2].item())
    assert log_bessel_iv(nu, x)[0].item() == -math.inf
    assert log_bessel_iv(0.0, torch.zeros(1, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-12)  # I_0(0) = 1
    assert torch.isnan(log_bessel_iv(nu, torch.tensor([-1.0], dtype=torch.float64))).all()
    # nu = 0 at x = 0: gradient 0, not 0/0
    x0 = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(log_bessel_iv(0.0, x0).sum(), x0)
    assert grad.item() == 0.0


def test_gradcheck():
    x = torch.tensor([1e-3, 0.7, 63.0, 900.0, 4850.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: log_bessel_iv(63, t), (x,))
    assert torch.autograd.gradcheck(lambda t: log_bessel_iv(2.5, t), (x,))
    assert torch.autograd.gradcheck(lambda t: log_iv_minus_nu_log_x(511, t), (x,))


def test_float32_input_returns_float32():
    x = torch.tensor([0.5, 50.0], dtype=torch.float32)
    out = log_bessel_iv(63, x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), log_bessel_iv(63, x.double()), rtol=1e-7, atol=0)


def test_argument_errors():
    x = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="nu must be finite and >= 0, got -1"):
        log_bessel_iv(-1, x)
    with pytest.raises(TypeError, match="nu must be a Python number"):
        log_bessel_iv(torch.tensor(3.0), x)
    with pytest.raises(TypeError, match="floating-point"):
        log_bessel_iv(3, torch.ones(2, dtype=torch.long))


def test_huge_arguments_with_the_recurrence():
    x = torch.tensor([1e200, 1e300], dtype=torch.float64)
    g, q = _g_and_q(2.0, x)  # 23 recurrence steps: x * (x q) must not overflow
    assert torch.isfinite(g).all() and torch.isfinite(q).all()
    assert g[1].item() == pytest.approx(1e300, rel=1e-12)
