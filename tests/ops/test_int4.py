"""fastnoise/ops/int4.py: the one-time symmetric INT4 quantization of NENNI's W~ and b~ (seed 000 §3.1).

quantize_int4 / dequantize_int4 / check_int4_values on their own: the scheme, the round trip, the range,
bad input naming the argument, empty and non-contiguous tensors. The INT4 mode of the approximation ops is
tested in tests/ops/test_ternary_projection.py, the layers' quantize_() in tests/nn/test_nenni_layers.py.
"""
import pytest
import torch

from fastnoise.ops import dequantize_int4, quantize_int4
from fastnoise.ops.int4 import INT4_MAX, INT4_MIN, check_int4_values


def test_quantize_int4_scheme():
    w = torch.randn(6, 8)
    w[2] = 0
    b = torch.randn(6)
    wq, w_scale, bq, b_scale = quantize_int4(w, b)
    assert wq.dtype == bq.dtype == torch.int8 and w_scale.shape == (6,) and b_scale.dim() == 0
    assert int(wq.min()) >= -8 and int(wq.max()) <= 7
    torch.testing.assert_close(w_scale[[0, 1]], w.abs().amax(1)[[0, 1]] / 7)
    assert w_scale[2] == 1 and (wq[2] == 0).all()
    wd, bd = dequantize_int4(wq, w_scale, bq, b_scale)
    assert ((wd - w).abs() <= w_scale[:, None] / 2 + 1e-6).all()
    assert ((bd - b).abs() <= b_scale / 2 + 1e-6).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_round_trip_is_idempotent(dtype):
    """Quantizing the dequantized weights gives the same INT4 values and scales back: every non-zero row of
    wq reaches |7| (the row maximum maps to 7 exactly), so dequantize -> quantize is the identity on them."""
    gen = torch.Generator().manual_seed(3)
    w = (torch.randn(5, 9, generator=gen) * torch.tensor([1e-3, 1.0, 30.0, 1.0, 1e3])[:, None]).to(dtype)
    w[3] = 0
    b = torch.randn(5, generator=gen).to(dtype)
    wq, ws, bq, bs = quantize_int4(w, b)
    assert ws.dtype == bs.dtype == dtype
    wd, bd = dequantize_int4(wq, ws, bq, bs, dtype=dtype)
    assert wd.dtype == bd.dtype == dtype
    wq2, ws2, bq2, bs2 = quantize_int4(wd, bd)
    assert torch.equal(wq2, wq) and torch.equal(bq2, bq)
    torch.testing.assert_close(ws2, ws)
    torch.testing.assert_close(bs2, bs)
    # and the INT4 values themselves survive dequantize -> re-round exactly
    assert torch.equal(torch.round(wd.double() / ws.double()[:, None]).to(torch.int8), wq)


def test_range_is_symmetric_and_reaches_seven():
    w = torch.randn(64, 33, generator=torch.Generator().manual_seed(1)) * 100
    wq, ws, _, _ = quantize_int4(w)
    assert int(wq.min()) >= -INT4_MAX and int(wq.max()) <= INT4_MAX  # symmetric: -8 is never produced
    assert (wq.abs().amax(1) == INT4_MAX).all()  # each row's maximum maps to +-7
    check_int4_values("wq", wq)  # in range: no error
    check_int4_values("wq", torch.tensor([INT4_MIN, INT4_MAX], dtype=torch.int8))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_quantize_int4_refuses_non_finite_weights(bad):
    """NaN became 0 with scale 1.0, inf a NaN row."""
    w = torch.tensor([[bad, 1.0], [0.5, 0.25]])
    with pytest.raises(ValueError, match=r"w must be finite to be quantized, got 1 NaN / inf values of 4"):
        quantize_int4(w)
    with pytest.raises(ValueError, match="b must be finite"):
        quantize_int4(w.nan_to_num(0.0, 0.0, 0.0), torch.tensor([0.0, bad]))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: quantize_int4(torch.ones(3, 4, dtype=torch.int32)), TypeError, "w must be a floating tensor"),
    (lambda: quantize_int4([[1.0]]), TypeError, "w must be"),
    (lambda: quantize_int4(torch.ones(2, 3, 4)), ValueError, r"w must have shape \[n, k\], got \(2, 3, 4\)"),
    (lambda: quantize_int4(torch.ones(3, 4), torch.ones(4)), ValueError, r"b must have shape \[n\] = \[3\]"),
    (lambda: quantize_int4(torch.ones(3, 4), torch.ones(3, dtype=torch.int64)), TypeError, "b must be a floating"),
    (lambda: dequantize_int4(torch.zeros(3, 4), torch.ones(3)), ValueError, r"wq must be an int8 tensor \[n, k\]"),
    (lambda: dequantize_int4(torch.zeros(3, dtype=torch.int8), torch.ones(3)), ValueError, "wq must be an int8"),
    (lambda: dequantize_int4(torch.zeros(3, 4, dtype=torch.int8), torch.ones(2)), ValueError,
     r"w_scale must have shape \[n\] = \[3\]"),
    (lambda: dequantize_int4(torch.zeros(3, 4, dtype=torch.int8), torch.ones(3, dtype=torch.int32)), TypeError,
     "w_scale must be a floating"),
    (lambda: dequantize_int4(torch.zeros(3, 4, dtype=torch.int8), torch.ones(3), dtype=torch.int32), TypeError,
     "dtype must be a floating torch dtype"),
    (lambda: dequantize_int4(torch.zeros(3, 4, dtype=torch.int8), torch.ones(3), torch.zeros(3, dtype=torch.int8)),
     ValueError, "bq and b_scale go together"),
    (lambda: dequantize_int4(torch.zeros(3, 4, dtype=torch.int8), torch.ones(3), torch.zeros(2, dtype=torch.int8),
                             1.0), ValueError, r"bq must be an int8 tensor \[n\] = \[3\]"),
    (lambda: dequantize_int4(torch.zeros(3, 4, dtype=torch.int8), torch.ones(3), torch.zeros(3, dtype=torch.int8),
                             torch.ones(2)), ValueError, "b_scale must be a scalar"),
    (lambda: dequantize_int4(torch.zeros(3, 4, dtype=torch.int8), torch.ones(3), torch.zeros(3, dtype=torch.int8),
                             -1.0), ValueError, "b_scale"),
    (lambda: check_int4_values("wq", torch.tensor([0, 8], dtype=torch.int8)), ValueError,
     r"wq must hold INT4 values in \[-8, 7\], got values in \[0, 8\]"),
    (lambda: check_int4_values("bq", torch.tensor([-9], dtype=torch.int8)), ValueError,
     r"bq must hold INT4 values in \[-8, 7\]"),
], ids=["w_int", "w_list", "w_3d", "b_shape", "b_int", "wq_float", "wq_1d", "w_scale_shape", "w_scale_int",
        "dtype_int", "bq_without_scale", "bq_shape", "b_scale_shape", "b_scale_negative", "range_hi", "range_lo"])
def test_bad_input_names_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_empty_shapes():
    wq, ws, bq, bs = quantize_int4(torch.zeros(3, 0), torch.ones(3))  # no entries: scale 1 (all-zero-row rule)
    assert wq.shape == (3, 0) and ws.tolist() == [1.0, 1.0, 1.0] and bq.tolist() == [7, 7, 7]
    w, b = dequantize_int4(wq, ws, bq, bs)
    assert w.shape == (3, 0) and torch.allclose(b, torch.ones(3))
    wq, ws, bq, bs = quantize_int4(torch.zeros(0, 4), torch.zeros(0))  # no rows
    assert wq.shape == (0, 4) and ws.shape == (0,) and bq.shape == (0,) and bs.dim() == 0
    w, b = dequantize_int4(wq, ws, bq, bs)
    assert w.shape == (0, 4) and b.shape == (0,)
    check_int4_values("wq", wq)


def test_non_contiguous_inputs_match_contiguous_ones():
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(9, 6, generator=gen).t()  # [6, 9], transposed view
    b = torch.randn(12, generator=gen)[::2]   # [6], stride 2
    assert not w.is_contiguous() and not b.is_contiguous()
    got = quantize_int4(w, b)
    want = quantize_int4(w.contiguous(), b.contiguous())
    for g, e in zip(got, want):
        assert torch.equal(g, e)
    wq, ws, bq, bs = want
    wd, bd = dequantize_int4(wq.t().contiguous().t(), ws.repeat_interleave(2)[::2], bq.repeat_interleave(2)[::2], bs)
    torch.testing.assert_close(wd, dequantize_int4(wq, ws, bq, bs)[0], rtol=0, atol=0)
    torch.testing.assert_close(bd, dequantize_int4(wq, ws, bq, bs)[1], rtol=0, atol=0)
