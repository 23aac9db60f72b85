"""proco_logits and ProCoLoss against loop references written from METHODS.md (ProCo section), with
mpmath for the Bessel functions; estimator semantics, checkpoint/resume, closed forms and errors."""
import copy
import io
import math

import mpmath
import pytest
import torch
import torch.nn.functional as F

from kcl_models.losses import ProCoLoss, proco_logits, vmf_kappa

COUNTS = [30, 12, 5, 2]


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def mp_log_iv(nu, x):
    with mpmath.workdps(40):
        return float(mpmath.log(mpmath.besseli(nu, x)))


def mp_ratio(nu, x):
    with mpmath.workdps(40):
        return float(mpmath.besseli(nu + 1, x) / mpmath.besseli(nu, x))


def logits_reference(z, mu, kappa, tau):
    """S_jc = log I_nu(kt) - nu log kt - (log I_nu(kappa_c) - nu log kappa_c), kt = |kappa_c mu_c + z_j / tau|."""
    n, p = z.shape
    nu = p / 2 - 1
    out = torch.empty(n, mu.shape[0], dtype=torch.float64)
    for j in range(n):
        for c in range(mu.shape[0]):
            kt = float(torch.linalg.vector_norm(kappa[c] * mu[c] + z[j] / tau))
            k = float(kappa[c])
            out[j, c] = (mp_log_iv(nu, kt) - nu * math.log(kt)) - (mp_log_iv(nu, k) - nu * math.log(k))
    return out


def logits_grad_reference(z, mu, kappa, tau, grad_out):
    """dL/dz_j = sum_c G_jc A(kt_jc) d kt_jc / dz_j, A = I_{nu+1}/I_nu, d kt/dz = (kappa mu + z/tau) / (tau kt)."""
    n, p = z.shape
    nu = p / 2 - 1
    grad = torch.zeros_like(z)
    for j in range(n):
        for c in range(mu.shape[0]):
            v = kappa[c] * mu[c] + z[j] / tau
            kt = float(torch.linalg.vector_norm(v))
            grad[j] += grad_out[j, c] * mp_ratio(nu, kt) * v / (tau * kt)
    return grad


@pytest.mark.parametrize("p, kappas", [(128, [5.0, 606.3, 2000.0, 4850.0]), (6, [0.3, 4.0, 40.0, 1e4])])
def test_logits_match_loop_reference(p, kappas):
    z = unit(5, p, seed=p).requires_grad_()
    mu = unit(4, p, seed=p + 1)
    mu[1] = -z[0].detach()  # kt near |kappa - 1/tau|: a cancellation case
    kappa = torch.tensor(kappas, dtype=torch.float64)
    tau = 0.1
    s = proco_logits(z, mu, kappa, tau)
    ref = logits_reference(z.detach(), mu, kappa, tau)
    torch.testing.assert_close(s, ref, atol=1e-6, rtol=1e-6)
    g = torch.randn(5, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (grad,) = torch.autograd.grad(s, z, g)
    torch.testing.assert_close(grad, logits_grad_reference(z.detach(), mu, kappa, tau, g), atol=1e-6, rtol=1e-6)


def test_logits_closed_form_p3():
    # p = 3: I_{1/2}(x) = sqrt(2 / (pi x)) sinh(x), so S = log(sinh(kt) / kt) - log(sinh(kappa) / kappa).
    z, mu = unit(6, 3, seed=1), unit(3, 3, seed=2)
    kappa = torch.tensor([0.5, 3.0, 30.0], dtype=torch.float64)
    tau = 0.5
    kt = torch.linalg.vector_norm(kappa[None, :, None] * mu[None] + z[:, None] / tau, dim=-1)
    lsh = lambda x: x + torch.log1p(-torch.exp(-2 * x)) - math.log(2) - torch.log(x)  # noqa: E731 log(sinh x / x)
    torch.testing.assert_close(proco_logits(z, mu, kappa, tau), lsh(kt) - lsh(kappa), atol=1e-10, rtol=1e-10)


def test_logits_gradcheck_all_inputs_and_zero_kappa():
    z = unit(4, 5, seed=7).mul(1.3).requires_grad_()  # not unit: the formula holds for any norm
    mu = unit(3, 5, seed=8).mul(0.8).requires_grad_()
    kappa = torch.tensor([0.0, 2.0, 50.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: proco_logits(a, b, c, 0.3), (z, mu, kappa))
    # kappa = 0 (a class whose mean is 0): S = g(|z| / tau) - g(0), finite
    s = proco_logits(unit(2, 5), unit(3, 5), torch.zeros(3, dtype=torch.float64), 0.3)
    assert torch.isfinite(s).all()


def test_kt_zero_has_finite_gradient():
    # z / tau = -kappa mu exactly: kt = 0, where d kt / dz does not exist but dS/dz does.
    mu = unit(2, 8, seed=4)
    z = (-mu[0] * 0.5).clone().requires_grad_()  # |z| = 0.5, tau = 0.5, kappa = 1: kt = 0
    s = proco_logits(z[None], mu, torch.tensor([1.0, 3.0], dtype=torch.float64), 0.5)
    (grad,) = torch.autograd.grad(s.sum(), z)
    assert torch.isfinite(s).all() and torch.isfinite(grad).all()


def test_vmf_kappa_estimates():
    r = torch.tensor([0.0, 0.5, 0.9, 1.0, 1.0 + 1e-7], dtype=torch.float64)
    p = 128
    authors = vmf_kappa(r, p)
    torch.testing.assert_close(authors[:3], p * r[:3] / (1 - r[:3] ** 2))
    assert authors[2].item() == pytest.approx(p * 90 / 19)  # the authors' initial kappa (R = 0.9)
    banerjee = vmf_kappa(r, p, "banerjee")
    torch.testing.assert_close(banerjee[:3], r[:3] * (p - r[:3] ** 2) / (1 - r[:3] ** 2))
    assert authors[3:].tolist() == [1e5, 1e5] and banerjee[3:].tolist() == [1e5, 1e5]  # R >= 1: kappa_max
    assert vmf_kappa(torch.tensor([0.99999999], dtype=torch.float64), p, kappa_max=7.0).item() == 7.0
    with pytest.raises(ValueError, match="estimate must be one of"):
        vmf_kappa(r, p, "mle")


# ---- the loss ----------------------------------------------------------------------------------

class ReferenceProCo:
    """METHODS.md's estimators written as loops over classes (float64)."""

    def __init__(self, loss: ProCoLoss):
        self.p, self.tau, self.c = loss.feature_dim, loss.temperature, loss.num_classes
        self.old = [loss.mean_old[c].clone().double() for c in range(self.c)], [0] * self.c
        self.new = [loss.mean_new[c].clone().double() for c in range(self.c)], [0] * self.c
        self.estimate, self.counts = loss.kappa_estimate, COUNTS

    def start_epoch(self, fresh_means):
        self.old = self.new
        self.new = [m.clone().double() for m in fresh_means], [0] * self.c

    def update(self, z, y):
        for ave, amount in (self.old, self.new):
            for c in range(self.c):
                rows = [z[i] for i in range(len(y)) if int(y[i]) == c]
                if not rows:
                    continue  # classes absent from the batch keep theirs
                n = len(rows)
                w = n / (n + amount[c])
                ave[c] = (1 - w) * ave[c] + w * (sum(rows) / n)
                amount[c] += n

    def loss(self, views, y):
        total = 0.0
        prior = torch.log(torch.tensor(self.counts, dtype=torch.float64) / sum(self.counts))
        for z in views:
            self.update(z, y)
            ave = torch.stack(self.old[0])
            r = torch.linalg.vector_norm(ave, dim=1)
            kappa = self.p * r / (1 - r**2) if self.estimate == "authors" else r * (self.p - r**2) / (1 - r**2)
            s = logits_reference(z, ave / r[:, None], kappa.clamp(max=1e5), self.tau)
            total = total + F.cross_entropy(s + prior, y)
        return total / len(views)


def _steps(seed, n_steps=4, b=6, p=8):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_steps):
        feats = F.normalize(torch.randn(b, 2, p, generator=g, dtype=torch.float64), dim=-1)
        out.append((feats, torch.randint(0, len(COUNTS), (b,), generator=g)))
    return out


@pytest.mark.parametrize("estimate", ["authors", "banerjee"])
def test_loss_matches_loop_reference_over_steps_and_an_epoch_swap(estimate):
    loss = ProCoLoss(COUNTS, feature_dim=8, temperature=0.1, kappa_estimate=estimate).double()
    loss.start_epoch(0)
    ref = ReferenceProCo(loss)
    for step, (feats, y) in enumerate(_steps(1)):
        if step == 2:
            loss.start_epoch(1)
            ref.start_epoch(list(loss.mean_new))  # the fresh means are random by design: take them
            assert torch.allclose(loss.mean_new.norm(dim=1), torch.full((4,), 0.9, dtype=torch.float64))
        got = loss(feats, y)
        want = ref.loss([feats[:, 0], feats[:, 1]], y)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(loss.mean_old, torch.stack(ref.old[0]), atol=1e-12, rtol=0)
        torch.testing.assert_close(loss.mean_new, torch.stack(ref.new[0]), atol=1e-12, rtol=0)
        assert loss.count_old.tolist() == ref.old[1] and loss.count_new.tolist() == ref.new[1]


def test_running_mean_is_the_mean_since_reset():
    loss = ProCoLoss(COUNTS, feature_dim=8).double()
    loss.start_epoch(0)
    init = loss.mean_new.clone()
    steps = _steps(2, n_steps=3)
    for feats, y in steps:
        loss.update(feats[:, 0], y)
    z = torch.cat([f[:, 0] for f, _ in steps])
    y = torch.cat([t for _, t in steps])
    for c in range(4):
        if (y == c).any():
            torch.testing.assert_close(loss.mean_new[c], z[y == c].mean(dim=0))
        else:
            assert torch.equal(loss.mean_new[c], init[c])  # absent classes keep their initial mean
    assert loss.count_new.tolist() == torch.bincount(y, minlength=4).tolist()


def test_start_epoch_swaps_once_and_draws_the_same_fresh_means_everywhere():
    a, b = ProCoLoss(COUNTS, feature_dim=8, seed=3), ProCoLoss(COUNTS, feature_dim=8, seed=3)
    assert torch.equal(a.mean_new, b.mean_new) and int(a.epoch) == -1
    a.start_epoch(0)
    feats, y = _steps(3, 1)[0]
    a.update(feats[:, 0].float(), y)
    after_update = a.mean_new.clone()
    a.start_epoch(1)
    assert torch.equal(a.mean_old, after_update) and a.count_old.sum() == 6 and a.count_new.sum() == 0
    fresh = a.mean_new.clone()
    a.start_epoch(1)  # already started (e.g. a resumed run): nothing changes
    assert torch.equal(a.mean_new, fresh) and torch.equal(a.mean_old, after_update)
    b.start_epoch(1)
    assert torch.equal(b.mean_new, fresh)  # (seed, epoch) fixes the draw: every process agrees
    assert not torch.equal(ProCoLoss(COUNTS, feature_dim=8, seed=4).mean_new, a.mean_old)


def test_views_are_processed_in_order():
    feats, y = _steps(4, 1)[0]
    both = ProCoLoss(COUNTS, feature_dim=8).double()
    single = copy.deepcopy(both)
    total = both(feats, y)
    expected = (single(feats[:, 0], y) + single(feats[:, 1], y)) / 2
    torch.testing.assert_close(total, expected, atol=1e-12, rtol=0)
    assert torch.equal(both.mean_old, single.mean_old)


def test_eval_mode_does_not_update():
    loss = ProCoLoss(COUNTS, feature_dim=8).double().eval()
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    feats, y = _steps(5, 1)[0]
    value = loss(feats, y)
    assert all(torch.equal(before[k], v) for k, v in loss.state_dict().items())
    mu, kappa = loss.vmf()
    adjust = loss.ce.adjustment.double()
    expected = sum(F.cross_entropy(proco_logits(feats[:, v], mu, kappa, 0.07) + adjust, y) for v in range(2)) / 2
    torch.testing.assert_close(value, expected)


def test_gradcheck_eval_mode():
    loss = ProCoLoss(COUNTS, feature_dim=6, temperature=0.2).double().eval()
    feats = unit(3, 2, 6, seed=9).requires_grad_()
    y = torch.tensor([0, 3, 0])
    assert torch.autograd.gradcheck(lambda f: loss(f, y), (feats,))


def test_gradient_reaches_features_only():
    loss = ProCoLoss(COUNTS, feature_dim=8).double()
    feats, y = _steps(6, 1)[0]
    feats.requires_grad_()
    loss(feats, y).backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
    assert all(not b.requires_grad for b in loss.buffers())


def test_state_dict_resume_mid_epoch_is_bit_exact():
    steps = _steps(7, n_steps=6)

    def run(loss, sl, epochs):
        out = []
        for i in sl:
            loss.start_epoch(epochs[i])
            feats, y = steps[i]
            out.append(loss(feats.float(), y))
        return out

    epochs = [0, 0, 0, 1, 1, 2]
    straight = ProCoLoss(COUNTS, feature_dim=8, seed=5)
    reference = run(straight, range(6), epochs)

    first = ProCoLoss(COUNTS, feature_dim=8, seed=5)
    head = run(first, range(4), epochs)  # stops mid-epoch 1
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = ProCoLoss(COUNTS, feature_dim=8, seed=5)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    tail = run(resumed, range(4, 6), epochs)  # start_epoch(1) again: a no-op
    for got, want in zip(head + tail, reference):
        assert torch.equal(got, want)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert set(straight.state_dict()) == {"mean_old", "count_old", "mean_new", "count_new", "epoch"}


def test_half_precision_features_are_upcast():
    loss = ProCoLoss(COUNTS, feature_dim=8)
    feats, y = _steps(8, 1)[0]
    assert loss(feats.bfloat16(), y).dtype == torch.float32


@pytest.mark.parametrize("bad, match", [
    (dict(features=torch.zeros(6, 2, 7)), "features have dim 7 but feature_dim is 8"),
    (dict(features=torch.zeros(6)), r"\[B, V, p\]"),
    (dict(labels=torch.tensor([0, 1, 2, 3, 4, 0])), "must be < num_classes=4, got label 4"),
    (dict(labels=torch.tensor([0, 1])), r"labels must have shape \[6\]"),
    (dict(features=torch.zeros(0, 2, 8), labels=torch.zeros(0, dtype=torch.long)), "empty batch"),
])
def test_errors(bad, match):
    args = dict(features=unit(6, 2, 8).float(), labels=torch.tensor([0, 1, 2, 3, 0, 1])) | bad
    with pytest.raises(ValueError, match=match):
        ProCoLoss(COUNTS, feature_dim=8)(**args)


def test_constructor_errors():
    with pytest.raises(ValueError, match="feature_dim must be an int >= 2"):
        ProCoLoss(COUNTS, feature_dim=1)
    with pytest.raises(ValueError, match="kappa_estimate must be one of"):
        ProCoLoss(COUNTS, feature_dim=8, kappa_estimate="mle")
    with pytest.raises(ValueError, match="zero training count"):
        ProCoLoss([3, 0], feature_dim=8)
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        ProCoLoss(COUNTS, feature_dim=8, temperature=-1)
    with pytest.raises(ValueError, match="epoch must be an int"):
        ProCoLoss(COUNTS, feature_dim=8).start_epoch(-1)
    with pytest.raises(ValueError, match="mu has dim 3 but z has dim 4"):
        proco_logits(unit(2, 4), unit(3, 3), torch.ones(3), 0.1)
    with pytest.raises(ValueError, match="kappa has 2 entries but mu has 3 classes"):
        proco_logits(unit(2, 4), unit(3, 4), torch.ones(2), 0.1)


def test_statistics_ignore_autocast():
    feats, y = _steps(9, 1)[0]
    plain, mixed = ProCoLoss(COUNTS, feature_dim=8), ProCoLoss(COUNTS, feature_dim=8)
    plain(feats.float(), y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed(feats.float(), y)
    assert mixed.mean_old.dtype == torch.float32
    assert torch.equal(plain.mean_old, mixed.mean_old) and torch.equal(plain.mean_new, mixed.mean_new)
