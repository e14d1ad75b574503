import sys
import types

import pytest
import torch
import torch.nn.functional as F

from jepa_scale.models import selective_scan as ss
from jepa_scale.models.selective_scan import scan_backend, selective_scan, selective_scan_flops
from tests.reference_selective_scan import selective_scan_ref

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def inputs(batch, E, N, L, D=True, z=True, bias=True, seed=0, dtype=torch.float32, delta_shift=0.0):
    """Realistic magnitudes: delta_raw ~ N(0, 1) (softplus ~ 0.7), A = -(1..N) (S4D-real init) scaled per channel."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    A = -torch.arange(1, N + 1.0).expand(E, N) * torch.rand(E, 1, generator=g).add(0.5)
    t = dict(u=r(batch, E, L), delta=r(batch, E, L) + delta_shift, A=A.contiguous(), B=r(batch, N, L),
             C=r(batch, N, L), D=r(E) if D else None, z=r(batch, E, L) if z else None,
             delta_bias=r(E) * 0.5 if bias else None)
    return {k: v.to(dtype) if v is not None and k in ("u", "delta", "B", "C", "z") else v for k, v in t.items()}


def rel_max(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


CASES = [  # (batch, E, N, L, with D, with z, with delta_bias, softplus)
    (2, 8, 4, 37, True, True, True, True),
    (1, 5, 3, 1, True, True, True, True),  # L = 1
    (1, 1, 1, 17, False, False, False, False),  # tiny E and N, no options, raw delta (kept positive below)
    (3, 16, 16, 64, True, False, False, True),
    (2, 6, 2, 100, False, True, True, False),
    (1, 12, 16, 500, True, True, True, True),
]


@pytest.mark.parametrize("batch,E,N,L,D,z,bias,softplus", CASES)
def test_matches_the_literal_recurrence(batch, E, N, L, D, z, bias, softplus):
    t = inputs(batch, E, N, L, D, z, bias)
    if not softplus:
        t["delta"] = t["delta"].abs()  # without softplus the caller supplies a positive step
    ref = selective_scan_ref(**t, delta_softplus=softplus)
    ours = selective_scan(**t, delta_softplus=softplus)
    assert ours.shape == (batch, E, L) and ours.dtype == torch.float32
    assert rel_max(ours, ref) < 1e-5


@pytest.mark.parametrize("L,chunk", [(37, 5), (37, 1), (37, 37), (37, 64), (64, 8), (101, 10), (2, 3)])
def test_any_chunk_size_gives_the_same_scan(L, chunk):
    # padding when the chunk does not divide L, a single chunk, chunks of one position, a chunk longer than L
    t = inputs(2, 6, 4, L)
    ours = ss._scan_torch(*(t[k] for k in NAMES), delta_softplus=True, chunk=chunk)
    assert rel_max(ours, selective_scan_ref(**t, delta_softplus=True)) < 1e-5


def test_long_sequence_with_strong_decay_stays_finite_and_exact():
    # delta ~ softplus(4) ~ 4 and A down to -16: a chunk's total decay underflows to 0, which must be harmless
    t = inputs(1, 4, 16, 3000, delta_shift=4.0)
    ours = selective_scan(**t, delta_softplus=True)
    assert torch.isfinite(ours).all()
    assert rel_max(ours, selective_scan_ref(**t, delta_softplus=True)) < 1e-5


def literal_backward_recurrence(u, delta, A, B, C, D, z, delta_bias):
    """The scan run from the last token to the first, written out directly: h_t depends on h_{t+1}."""
    delta = F.softplus(delta + delta_bias[:, None])
    h = torch.zeros(u.shape[0], A.shape[0], A.shape[1])
    out = torch.empty_like(u)
    for t in reversed(range(u.shape[-1])):
        h = torch.exp(delta[..., t, None] * A) * h + (delta[..., t] * u[..., t])[..., None] * B[:, None, :, t]
        out[..., t] = ((h * C[:, None, :, t]).sum(-1) + D * u[..., t]) * F.silu(z[..., t])
    return out


def test_reversed_inputs_scan_backwards():
    # VideoMamba's backward direction: flip every [.., L] input, scan, flip the output back
    t = inputs(2, 8, 4, 45)
    flipped = {k: v.flip(-1) if k in ("u", "delta", "B", "C", "z") else v for k, v in t.items()}
    back = selective_scan(**flipped, delta_softplus=True).flip(-1)
    expected = literal_backward_recurrence(**t)
    assert rel_max(back, expected) < 1e-5
    assert rel_max(selective_scan(**t, delta_softplus=True), expected) > 1e-2  # the two directions do differ


@pytest.mark.parametrize("D,z,bias,L", [(True, True, True, 29), (False, False, False, 29), (True, True, True, 1)])
def test_gradients_equal_the_references(D, z, bias, L):
    # L = 29: chunks of 3, so the carries are differentiated too; L = 1: a single chunk
    t = inputs(2, 6, 4, L, D, z, bias)
    w = torch.randn(2, 6, L, generator=torch.Generator().manual_seed(9))

    def grads(fn):
        leaves = {k: v.clone().requires_grad_() for k, v in t.items() if v is not None}
        (fn(**leaves, delta_softplus=True) * w).sum().backward()
        return {k: v.grad for k, v in leaves.items()}

    ours, ref = grads(selective_scan), grads(selective_scan_ref)
    assert ours.keys() == ref.keys() and len(ours) == 5 + D + z + bias
    for k in ref:  # (at L = 1 the state starts at 0, so A's gradient is exactly 0 in both)
        assert (ours[k] - ref[k]).abs().max() <= 1e-4 * ref[k].abs().max() + 1e-7, k


def test_the_in_place_path_without_autograd_equals_the_autograd_path():
    t = inputs(2, 8, 4, 50)
    with torch.no_grad():
        fast = selective_scan(**t, delta_softplus=True)
    u = t["u"].clone().requires_grad_()
    graded = selective_scan(**{**t, "u": u}, delta_softplus=True)
    assert graded.requires_grad and torch.allclose(fast, graded.detach(), rtol=1e-6, atol=1e-6)


def test_bfloat16_inputs_are_scanned_in_float32_and_returned_in_bfloat16():
    t = inputs(2, 8, 4, 40, dtype=torch.bfloat16)
    ours = selective_scan(**t, delta_softplus=True)
    upcast = {k: v.float() if v is not None else None for k, v in t.items()}
    assert ours.dtype == torch.bfloat16
    # the same as the fp32 scan of the same values, rounded once at the end
    assert torch.equal(ours, selective_scan(**upcast, delta_softplus=True).bfloat16())
    ref = selective_scan_ref(**upcast, delta_softplus=True)
    assert torch.allclose(ours.float(), ref, rtol=2 ** -8, atol=1e-6 * ref.abs().max().item())  # one rounding


def test_cpu_tensors_take_the_torch_path():
    u = torch.zeros(1, 2, 3)
    assert scan_backend(u) == "torch"
    t = inputs(1, 4, 2, 9)
    assert torch.equal(selective_scan(**t, backend="auto"), selective_scan(**t, backend="torch"))
    with pytest.raises(ValueError, match="unknown selective-scan backend 'triton'"):
        selective_scan(**t, backend="triton")


def test_cuda_backend_on_cpu_raises_a_clear_error():
    t = inputs(1, 4, 2, 9)
    with pytest.raises(RuntimeError, match="needs CUDA tensors, got u on cpu") as e:
        selective_scan(**t, backend="cuda")
    if ss._mamba_scan()[0] is None:  # and without the package it says how to install it
        assert "MAMBA_KEEP_CUDA_BUILD=TRUE" in str(e.value) and "--no-build-isolation mamba-ssm" in str(e.value)


class _Refuse:
    """A meta-path finder that makes `import mamba_ssm...` raise the given exception (as a broken install does)."""

    def __init__(self, exc):
        self.exc = exc

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "mamba_ssm":
            raise self.exc
        return None


@pytest.fixture
def fresh_probe(monkeypatch):
    """Forget the cached probe and any real mamba_ssm modules, restoring both afterwards."""
    monkeypatch.setattr(ss, "_mamba", None)
    for name in [m for m in sys.modules if m.split(".")[0] == "mamba_ssm"]:
        monkeypatch.delitem(sys.modules, name)
    return monkeypatch


@pytest.mark.parametrize("exc", [ImportError("No module named 'selective_scan_cuda'"),
                                 TypeError("cannot unpack non-iterable NoneType object")])
def test_a_broken_mamba_ssm_install_is_caught_and_reported(fresh_probe, exc):
    fresh_probe.setattr(sys, "meta_path", [_Refuse(exc)] + sys.meta_path)
    fn, why = ss._mamba_scan()
    assert fn is None and type(exc).__name__ in why and str(exc) in why and "MAMBA_KEEP_CUDA_BUILD" in why
    with pytest.raises(RuntimeError, match=type(exc).__name__):
        selective_scan(**inputs(1, 2, 2, 3), backend="cuda")


def fake_mamba(monkeypatch, **attrs):
    """Install a stand-in mamba_ssm.ops.selective_scan_interface with the given attributes."""
    mods = {n: types.ModuleType(n) for n in ("mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.selective_scan_interface")}
    mods["mamba_ssm"].ops = mods["mamba_ssm.ops"]
    mods["mamba_ssm.ops"].selective_scan_interface = mods["mamba_ssm.ops.selective_scan_interface"]
    for k, v in attrs.items():
        setattr(mods["mamba_ssm.ops.selective_scan_interface"], k, v)
    for n, m in mods.items():
        monkeypatch.setitem(sys.modules, n, m)


def test_mamba_ssm_without_its_cuda_extension_is_reported(fresh_probe):
    # mamba-ssm >= PR #977 installed without MAMBA_KEEP_CUDA_BUILD imports, with selective_scan_cuda = None
    fake_mamba(fresh_probe, selective_scan_fn=lambda *a, **k: None, selective_scan_cuda=None)
    fn, why = ss._mamba_scan()
    assert fn is None and "without its selective_scan_cuda extension" in why


def test_a_working_kernel_is_used_only_for_cuda_tensors(fresh_probe):
    calls = []
    fake_mamba(fresh_probe, selective_scan_fn=lambda *a, **k: calls.append(k), selective_scan_cuda=object())
    assert ss._mamba_scan()[0] is not None and scan_backend(torch.zeros(1, 2, 3)) == "torch"
    selective_scan(**inputs(1, 2, 2, 3), backend="auto")
    assert calls == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_kernel_matches_our_scan():
    pytest.importorskip("mamba_ssm")
    if ss._mamba_scan()[0] is None:
        pytest.skip(ss._mamba_scan()[1])
    t = {k: v.cuda() if v is not None else None for k, v in inputs(2, 64, 16, 777).items()}
    assert scan_backend(t["u"]) == "cuda"
    kernel = selective_scan(**t, delta_softplus=True, backend="cuda")
    ours = selective_scan(**t, delta_softplus=True, backend="torch")
    assert torch.equal(selective_scan(**t, delta_softplus=True), kernel)  # auto picks the kernel
    assert rel_max(kernel, ours) < 1e-4
    leaves = [{k: v.clone().requires_grad_() for k, v in t.items()} for _ in range(2)]
    for backend, leaf in zip(("cuda", "torch"), leaves):
        selective_scan(**leaf, delta_softplus=True, backend=backend).square().sum().backward()
    for k in t:
        assert rel_max(leaves[0][k].grad, leaves[1][k].grad) < 1e-3, k


def test_flops_match_a_hand_count():
    # batch 2, E 3, N 4, L 5: 9 per (batch, token, channel, state) = 9*2*5*3*4 = 1080; D and z add 2*5*3 = 30 each
    assert selective_scan_flops(2, 3, 4, 5, with_z=False, with_D=False) == 1080
    assert selective_scan_flops(2, 3, 4, 5, with_z=False, with_D=True) == 1110
    assert selective_scan_flops(2, 3, 4, 5) == 1140
    # VideoMamba-tiny, one direction of one layer at 8x224 (1568 tokens + cls): 9*1569*384*16 + 2*1569*384
    assert selective_scan_flops(1, 384, 16, 1569) == 9 * 1569 * 384 * 16 + 2 * 1569 * 384 == 87_964_416
