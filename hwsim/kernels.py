"""Numba kernels of the synaptic engines. The conv and linear kernels are event-driven: they loop
over the non-zero elements of their source tensor only (spikes in FP and WG, errors in BP), so zero
spikes and zero errors cost nothing, and return the synaptic operations they performed per output
unit.

Every destination element receives its products in the order of the plain loop nest over the
source (FP: input row, column, channel; BP: output row, column, channel; WG: sample, row, column),
one float32 multiply and one add at a time, so the results do not depend on the loop order the
kernels use for speed:
- `_accumulate` adds four source rows per pass over a destination row, each element still taking
  them one by one;
- destination rows span the taps of a kernel row that reach adjacent positions (dilation 1, one
  group), so the inner loops are long contiguous loops that LLVM vectorises.
`error_model="numpy"` keeps division checks out of the loops; `nogil` lets samples run in threads.

Layouts: activations and results are [B, C, H, W] (a 1-D conv is a 2-D conv with H = 1), the
errors read by BP and WG channels-last [B, H, W, C]. Weights are pre-transposed so that the taps
of a kernel row are contiguous in the order their destinations run:
  FP  wf[cin_local, kh, kw, cout], kw in tap_order(kw, stride)   (W.transpose(1, 2, 3, 0)[:, :, order])
  BP  wb[cout, kh, kw, cin_local]                                 (W.transpose(0, 2, 3, 1))
  WG  accumulates dwf in the FP layout.
The other kernels (neuron steps, batch-norm, max pooling, FP16 rounding, counting) equal the NumPy
expressions they replace bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

SHARED = 1 << 20  # BP weights (floats) above which all input rows share each pass's weight rows


@njit(cache=True, error_model="numpy", nogil=True)
def _tap(pos: int, pad: int, k: int, dil: int, stride: int, size: int) -> int:
    """Output index that input index `pos` reaches through kernel tap `k`, or -1."""
    num = pos + pad - k * dil
    if num < 0 or num % stride != 0:
        return -1
    o = num // stride
    return o if o < size else -1


@njit(cache=True, error_model="numpy", nogil=True)
def _events(a, groups):
    """The non-zero entries of a [B, C, H, W] per position: their channels in ascending order in
    ch[b, y, x] and their values in val[b, y, x], those of group g from start[b, y, x, g] to
    start[b, y, x, g + 1]."""
    B, C, H, W = a.shape
    cg = C // groups
    ch = np.empty((B, H, W, C), np.int32)
    val = np.empty((B, H, W, C), a.dtype)
    start = np.empty((B, H, W, groups + 1), np.int32)
    n = np.empty(W, np.int32)
    for b in range(B):
        for y in range(H):
            n[:] = 0
            for c in range(C):
                if c % cg == 0:
                    start[b, y, :, c // cg] = n
                for x in range(W):
                    if a[b, c, y, x] != 0:
                        ch[b, y, x, n[x]], val[b, y, x, n[x]] = c, a[b, c, y, x]
                        n[x] += 1
            start[b, y, :, groups] = n
    return ch, val, start


@njit(cache=True, error_model="numpy", nogil=True)
def _accumulate(acc, v, off, src, n):
    """acc[:] += v[m] * src[off[m]:off[m] + acc.size] for m = 0 .. n - 1, in that order. Four
    rows go per pass over acc, each element still seeing the same sequence of additions."""
    L = acc.size
    m = 0
    while m + 4 <= n:
        v0, v1, v2, v3 = v[m], v[m + 1], v[m + 2], v[m + 3]
        r0, r1 = src[off[m]:off[m] + L], src[off[m + 1]:off[m + 1] + L]
        r2, r3 = src[off[m + 2]:off[m + 2] + L], src[off[m + 3]:off[m + 3] + L]
        for k in range(L):
            acc[k] = (((acc[k] + v0 * r0[k]) + v1 * r1[k]) + v2 * r2[k]) + v3 * r3[k]
        m += 4
    for m in range(m, n):
        v0, r0 = v[m], src[off[m]:off[m] + L]
        for k in range(L):
            acc[k] += v0 * r0[k]


def tap_order(kw: int, stride: int) -> np.ndarray:
    """The kernel columns in the order of the FP and WG weight layouts: by phase j % stride, and
    descending within a phase, so that the outputs an input reaches through the taps of one
    phase run in ascending order (reversed columns for stride 1)."""
    return np.array([j for r in range(stride) for j in reversed(range(r, kw, stride))])


@njit(cache=True, error_model="numpy", nogil=True)
def _slot(j: int, KW: int, s: int) -> int:
    """Position of kernel column j in tap_order(KW, s)."""
    q = 0
    for r in range(j % s):
        q += (KW - r + s - 1) // s
    return q + (KW - j % s + s - 1) // s - 1 - j // s


@njit(cache=True, error_model="numpy", nogil=True)
def _runs(W: int, KW: int, s: int, pad: int, lo: int, hi: int):
    """Per input column x (dilation 1): its phase (x + pad) % s, the slots a .. z - 1 (in
    tap_order) of the taps of that phase that reach outputs lo .. hi - 1, and the output o of
    slot a; the outputs of the slots run o, o + 1, ..."""
    ph, a, z, o = np.zeros(W, np.int64), np.zeros(W, np.int64), np.zeros(W, np.int64), np.zeros(W, np.int64)
    for x in range(W):
        r = (x + pad) % s
        base = (x + pad - r) // s  # output of tap r; tap r + t s reaches base - t
        t0, t1 = max(0, base - hi + 1), min((KW - r + s - 1) // s - 1, base - lo)
        if t0 <= t1:
            ph[x], a[x], o[x] = r, _slot(r + t1 * s, KW, s), base - t1
            z[x] = a[x] + t1 - t0 + 1
    return ph, a, z, o


@njit(cache=True, error_model="numpy", nogil=True)
def conv_fwd(x, wf, stride, pad, dil, groups, HO, WO):
    """out[b, k, oy, ox] = sum of x[b, c, y, x] * W[k, c % cin_g, i, j] over the non-zero inputs, in
    the order of (y, x, c). Returns out [B, COUT, HO, WO] and ops[b, group]: synaptic operations
    per output channel of each group. Output rows accumulate channels-last."""
    B, C, H, W = x.shape
    cin_g, KH, KW, COUT = wf.shape
    cog = COUT // groups
    ch, val, start = _events(x, groups)
    src = wf.ravel()
    rows = dil[1] == 1 and groups == 1  # an input reaches a run of outputs through each phase
    _, sa, sz, so = _runs(W, KW, stride[1], pad[1], 0, WO)
    out = np.empty((B, COUT, HO, WO), x.dtype)
    ops = np.zeros((B, groups), np.int64)
    acc = np.empty(WO * COUT, x.dtype)
    off = np.empty(KH * KW * cin_g, np.int64)
    v = np.empty(KH * KW * cin_g, x.dtype)
    for b in range(B):
        for oy in range(HO):
            acc[:] = 0
            if rows:  # each input in turn adds the taps of its phase to the outputs they reach
                for i in range(KH):
                    y = oy * stride[0] - pad[0] + i * dil[0]
                    if y < 0 or y >= H:
                        continue
                    for xx in range(W):
                        a, z, o = sa[xx], sz[xx], so[xx]
                        if a >= z:
                            continue
                        n = start[b, y, xx, 1]
                        for m in range(n):
                            off[m] = ((ch[b, y, xx, m] * KH + i) * KW + a) * COUT
                        ops[b, 0] += n * (z - a)
                        _accumulate(acc[o * COUT:(o + z - a) * COUT], val[b, y, xx], off, src, n)
            else:  # each output gathers all its taps
                for ox in range(WO):
                    for g in range(groups):
                        n = 0
                        for i in range(KH):
                            y = oy * stride[0] - pad[0] + i * dil[0]
                            if y < 0 or y >= H:
                                continue
                            for j in range(KW):
                                xx = ox * stride[1] - pad[1] + j * dil[1]
                                if xx < 0 or xx >= W:
                                    continue
                                q = _slot(j, KW, stride[1])
                                for m in range(start[b, y, xx, g], start[b, y, xx, g + 1]):
                                    cl = ch[b, y, xx, m] - g * cin_g
                                    off[n] = ((cl * KH + i) * KW + q) * COUT + g * cog
                                    v[n] = val[b, y, xx, m]
                                    n += 1
                        ops[b, g] += n
                        _accumulate(acc[ox * COUT + g * cog:ox * COUT + (g + 1) * cog], v, off, src, n)
            for k in range(COUT):
                for ox in range(WO):
                    out[b, k, oy, ox] = acc[ox * COUT + k]
    return out, ops


@njit(cache=True, error_model="numpy", nogil=True)
def conv_bwd(e, wb, stride, pad, dil, groups, H, W):
    """gx[b, c, y, x] = sum of e[b, oy, ox, k] * W[k, c % cin_g, i, j] over the non-zero errors, in
    the order of (oy, ox, k); e is channels-last. Returns gx [B, C, H, W] and ops[b, k]: synaptic
    operations per output channel. Input rows accumulate channels-last, one at a time or, with
    large weights, all together, taking the errors in chunks of channels so that a chunk's weight
    rows stay in cache for every row."""
    B, HO, WO, COUT = e.shape
    _, KH, KW, cin_g = wb.shape
    C = cin_g * groups
    cog = COUT // groups
    src = wb.ravel()
    run = KW if dil[1] == 1 and groups == 1 else 1  # taps whose inputs are contiguous
    nb, kc = (1, 32 if cog % 32 == 0 else cog) if wb.size > SHARED else (H, cog)  # row bands, chunk
    gx = np.empty((B, C, H, W), e.dtype)
    ops = np.zeros((B, COUT), np.int64)
    acc = np.empty(-(-H // nb) * W * C, e.dtype)  # [y, x, c] of a band
    off = np.empty(kc, np.int64)
    v = np.empty(kc, e.dtype)
    for b in range(B):
        for band in range(nb):
            y0, y1 = band * H // nb, (band + 1) * H // nb
            acc[:] = 0
            for i in range(KH - 1, -1, -1):  # ascending oy
                for ox in range(WO):
                    xs = ox * stride[1] - pad[1]  # input of tap 0
                    for j in range(0, KW, run):  # taps a .. z - 1 land on inputs
                        a, z = max(j, -(xs // dil[1])), min(j + run, -(-(W - xs) // dil[1]))  # 0 <= x < W
                        if a >= z:
                            continue
                        xa = xs + a * dil[1]
                        for k0 in range(0, COUT, kc):
                            g = k0 // cog
                            for y in range(y0, y1):
                                oy = _tap(y, pad[0], i, dil[0], stride[0], HO)
                                if oy < 0:
                                    continue
                                n = 0
                                for k in range(k0, min(k0 + kc, (g + 1) * cog)):
                                    if e[b, oy, ox, k] != 0:
                                        off[n], v[n] = ((k * KH + i) * KW + a) * cin_g, e[b, oy, ox, k]
                                        ops[b, k] += cin_g * (z - a)
                                        n += 1
                                o = ((y - y0) * W + xa) * C + g * cin_g
                                _accumulate(acc[o:o + (z - a - 1) * C + cin_g], v, off, src, n)
            for c in range(C):
                for y in range(y0, y1):
                    for xx in range(W):
                        gx[b, c, y, xx] = acc[((y - y0) * W + xx) * C + c]
    return gx, ops


@njit(cache=True, error_model="numpy", nogil=True)
def conv_wg(x, e, dwf, stride, pad, dil, groups):
    """dW[k, c % cin_g, i, j] += x[b, c, y, x] * e[b, oy, ox, k] for every non-zero input, in the
    order of (b, y, x), into dwf (the FP layout); e is channels-last. Returns ops[b, group] as
    conv_fwd. Each input channel and kernel row accumulate in turn."""
    B, C, H, W = x.shape
    cin_g, KH, KW, COUT = dwf.shape
    cog = COUT // groups
    HO, WO = e.shape[1], e.shape[2]
    src = e.ravel()
    dst = dwf.reshape(cin_g, KH, KW * COUT)
    rows = dil[1] == 1 and groups == 1  # an input reaches a run of outputs through each phase
    ph, sa, sz, so = _runs(W, KW, stride[1], pad[1], 0, WO)
    ops = np.zeros((B, groups), np.int64)
    # per channel and kernel row, the non-zero inputs that reach an output: sample, error row, x, value
    eb, erow, xs = np.empty(B * H * W, np.int64), np.empty(B * H * W, np.int64), np.empty(B * H * W, np.int64)
    vs = np.empty(B * H * W, x.dtype)
    off = np.empty(B * H * W, np.int64)
    v = np.empty(B * H * W, x.dtype)
    for c in range(C):
        g = c // cin_g
        for i in range(KH):
            nv = 0
            for b in range(B):
                for y in range(H):
                    oy = _tap(y, pad[0], i, dil[0], stride[0], HO)
                    if oy < 0:
                        continue
                    for xx in range(W):
                        if x[b, c, y, xx] != 0:
                            eb[nv], erow[nv], xs[nv], vs[nv] = b, b * HO + oy, xx, x[b, c, y, xx]
                            nv += 1
            # one pass per phase (rows) or per column (else); each input adds its slots a .. z - 1
            for p in range(stride[1] if rows else KW):
                n, lo, hi, q = 0, 0, 0, _slot(p, KW, stride[1])
                for m in range(nv):
                    if rows:
                        if ph[xs[m]] != p:
                            continue
                        a, z, ox = sa[xs[m]], sz[xs[m]], so[xs[m]]
                    else:
                        ox = _tap(xs[m], pad[1], p, dil[1], stride[1], WO)
                        a = q
                        z = a + 1 if ox >= 0 else a
                    if a >= z:
                        continue
                    if n and (a, z) != (lo, hi):  # flush the inputs with slots lo .. hi - 1
                        _accumulate(dst[c - g * cin_g, i, lo * COUT + g * cog:(hi - 1) * COUT + (g + 1) * cog],
                                    v, off, src, n)
                        n = 0
                    lo, hi = a, z
                    off[n], v[n] = (erow[m] * WO + ox) * COUT + g * cog, vs[m]
                    ops[eb[m], g] += z - a
                    n += 1
                if n:
                    _accumulate(dst[c - g * cin_g, i, lo * COUT + g * cog:(hi - 1) * COUT + (g + 1) * cog],
                                v, off, src, n)
    return ops


@njit(cache=True, error_model="numpy", nogil=True)
def linear_fwd(x, wt, out):
    """out[r, :] += x[r, i] * wt[i, :] for every non-zero x[r, i]; returns events per row."""
    R, N = x.shape
    M = wt.shape[1]
    ops = np.zeros(R, dtype=np.int64)
    for r in range(R):
        for i in range(N):
            v = x[r, i]
            if v == 0:
                continue
            ops[r] += 1
            orow, wrow = out[r], wt[i]
            for j in range(M):
                orow[j] += v * wrow[j]
    return ops


@njit(cache=True, error_model="numpy", nogil=True)
def linear_bwd(e, w, gx):
    """gx[r, :] += e[r, j] * w[j, :] for every non-zero error; returns ops[r, j] (fan-in or 0)."""
    R, M = e.shape
    N = w.shape[1]
    ops = np.zeros((R, M), dtype=np.int64)
    for r in range(R):
        for j in range(M):
            v = e[r, j]
            if v == 0:
                continue
            ops[r, j] = N
            grow, wrow = gx[r], w[j]
            for i in range(N):
                grow[i] += v * wrow[i]
    return ops


@njit(cache=True, error_model="numpy", nogil=True)
def linear_wg(x, e, dwt):
    """dwt[i, :] += x[r, i] * e[r, :] for every non-zero x[r, i]; returns events per row."""
    R, N = x.shape
    M = e.shape[1]
    ops = np.zeros(R, dtype=np.int64)
    for r in range(R):
        for i in range(N):
            v = x[r, i]
            if v == 0:
                continue
            ops[r] += 1
            drow, erow = dwt[i], e[r]
            for j in range(M):
                drow[j] += v * erow[j]
    return ops


@njit(cache=True, error_model="numpy", nogil=True)
def matmul_fwd(a, b, out):
    """out[g, m, :] += a[g, m, k] * b[g, k, :] for every non-zero a[g, m, k] (a [G, M, K], b [G, K, N]):
    the product of two activations, `a` streamed as events, `b` stationary. Returns the non-zero
    products per row of `out`, [G, M] (a zero of `b` costs nothing either). BP runs it on the
    errors and b transposed."""
    G, M, K = a.shape
    N = b.shape[2]
    ops = np.zeros((G, M), dtype=np.int64)
    nnz = np.zeros(K, dtype=np.int64)
    for g in range(G):
        for k in range(K):
            c = 0
            for n in range(N):
                if b[g, k, n] != 0:
                    c += 1
            nnz[k] = c
        for m in range(M):
            orow = out[g, m]
            for k in range(K):
                v = a[g, m, k]
                if v == 0:
                    continue
                ops[g, m] += nnz[k]
                brow = b[g, k]
                for n in range(N):
                    orow[n] += v * brow[n]
    return ops


@njit(cache=True, error_model="numpy", nogil=True)
def matmul_wg(a, e, gb):
    """gb[g] += a[g]^T e[g], one outer product a[g, m, :] x e[g, m, :] per row m, skipping zeros of
    a (the WG engine's form). Returns the non-zero products per row m, [G, M]."""
    G, M, K = a.shape
    N = e.shape[2]
    ops = np.zeros((G, M), dtype=np.int64)
    for g in range(G):
        for m in range(M):
            na, ne = 0, 0
            for k in range(K):
                if a[g, m, k] != 0:
                    na += 1
            for n in range(N):
                if e[g, m, n] != 0:
                    ne += 1
            ops[g, m] = na * ne
            erow = e[g, m]
            for k in range(K):
                v = a[g, m, k]
                if v == 0:
                    continue
                grow = gb[g, k]
                for n in range(N):
                    grow[n] += v * erow[n]
    return ops


@njit(cache=True, error_model="numpy", nogil=True)
def count_nonzero(a) -> int:
    """Non-zero elements of `a` (np.count_nonzero is slow on floats)."""
    n = 0
    for v in a.flat:
        n += v != 0
    return n


@njit(cache=True, error_model="numpy", nogil=True)
def max_pool(x, kernel, stride, pad, out_hw):
    """Max pooling of x [B, C, H, W], padding counting as -inf: the outputs [B, C, HO, WO] and the
    index (row-major in the window) of each window's first maximum, as np.argmax."""
    B, C, H, W = x.shape
    HO, WO = out_hw
    out = np.empty((B, C, HO, WO), x.dtype)
    first = np.empty((B, C, HO, WO), np.int64)
    for b in range(B):
        for c in range(C):
            for oy in range(HO):
                for ox in range(WO):
                    m, arg = -np.inf, 0
                    for i in range(kernel[0]):
                        for j in range(kernel[1]):
                            y, xx = oy * stride[0] - pad[0] + i, ox * stride[1] - pad[1] + j
                            if 0 <= y < H and 0 <= xx < W:
                                v = x[b, c, y, xx]
                                if v > m or (v != v and m == m):  # NaN wins, as in np.max
                                    m, arg = v, i * kernel[1] + j
                    out[b, c, oy, ox], first[b, c, oy, ox] = m, arg
    return out, first


@njit(cache=True, error_model="numpy", nogil=True)
def max_pool_bwd(first, go, kernel, stride, pad, gx):
    """gx [B, C, H, W] += go at each window's first maximum, windows added tap by tap in row-major
    order (the order of the NumPy reference)."""
    B, C, H, W = gx.shape
    HO, WO = go.shape[2], go.shape[3]
    for b in range(B):
        for c in range(C):
            for i in range(kernel[0]):
                for j in range(kernel[1]):
                    for oy in range(HO):
                        for ox in range(WO):
                            y, xx = oy * stride[0] - pad[0] + i, ox * stride[1] - pad[1] + j
                            if first[b, c, oy, ox] == i * kernel[1] + j and 0 <= y < H and 0 <= xx < W:
                                gx[b, c, y, xx] += go[b, c, oy, ox]


@njit(cache=True, error_model="numpy", nogil=True)
def leaky(drive, u_prev, first, beta, gain, bias, thr, v_reset, reset, u, spikes):
    """One step of leaky neurons [B, M] (coefficients [M]): u = beta u_prev + gain drive + bias,
    less r thr (reset 1, subtract) or with (1 - r) u_prev + r v_reset for u_prev (reset 2, zero),
    r = u_prev > thr; reset 0 (li) has neither; u_prev and r are 0 at the `first` step. Writes u
    and spikes = u > thr, with the float32 operations of the NumPy expressions in their order."""
    B, M = drive.shape
    one, zero = np.float32(1), np.float32(0)
    for b in range(B):
        for m in range(M):
            up = zero if first else u_prev[b, m]
            r = one if up > thr[m] and not first else zero
            if reset == 1:
                v = beta[m] * up + gain[m] * drive[b, m] + bias[m] - r * thr[m]
            elif reset == 2:
                v = beta[m] * ((one - r) * up + r * v_reset[m]) + gain[m] * drive[b, m] + bias[m]
            else:
                v = beta[m] * up + gain[m] * drive[b, m] + bias[m]
            u[b, m] = v
            spikes[b, m] = one if v > thr[m] else zero


@njit(cache=True, error_model="numpy", nogil=True)
def leaky_bwd(go, u, u_prev, first, carry, beta, gain, thr, slope, atan, reset, out):
    """One step back through `leaky` neurons [B, M]: du = carry + go dS/dU(u) (go for li, reset 0),
    the surrogate atan (slope/2) / (1 + (pi/2 slope (u - thr))^2) or fast sigmoid
    1 / (slope |u - thr| + 1)^2; out = du gain and, in place, carry = du beta (1 - r) for the zero
    reset (r = u_prev > thr, 0 at the `first` step) or du beta. carry enters as 0 at the last step
    (`carry` holds zeros then)."""
    B, M = go.shape
    one, zero = np.float32(1), np.float32(0)
    half, k = slope / np.float32(2), np.float32(np.pi / 2) * slope
    for b in range(B):
        for m in range(M):
            if reset == 0:
                du = carry[b, m] + go[b, m]
            else:
                d = u[b, m] - thr[m]
                if atan:
                    sg = half / (one + (k * d) * (k * d))
                else:
                    t = slope * abs(d) + one
                    sg = one / (t * t)
                du = carry[b, m] + go[b, m] * sg
            if reset == 2:
                r = one if not first and u_prev[b, m] > thr[m] else zero
                carry[b, m] = du * beta[m] * (one - r)
            else:
                carry[b, m] = du * beta[m]
            out[b, m] = du * gain[m]


@njit(cache=True, error_model="numpy", nogil=True)
def batchnorm(x, a, c, out):
    """out = x a + c per channel, x [B, C, P]."""
    B, C, P = x.shape
    for b in range(B):
        for ch in range(C):
            for p in range(P):
                out[b, ch, p] = x[b, ch, p] * a[ch] + c[ch]


@njit(cache=True, error_model="numpy", nogil=True)
def batchnorm_bwd(x, go, mean, sd, a, gxhat, gx):
    """gxhat = go ((x - mean) / sd) and gx = go a per channel, x [B, C, P]."""
    B, C, P = x.shape
    for b in range(B):
        for ch in range(C):
            for p in range(P):
                gxhat[b, ch, p] = go[b, ch, p] * ((x[b, ch, p] - mean[ch]) / sd[ch])
                gx[b, ch, p] = go[b, ch, p] * a[ch]


@njit(cache=True, error_model="numpy", nogil=True)
def batch_stats(x, mean, var):
    """Per channel of x [N, C, P], the mean and the biased variance over N and P (two passes,
    sums in float64), into mean and var [C]."""
    N, C, P = x.shape
    for ch in range(C):
        s = 0.0
        for b in range(N):
            for p in range(P):
                s += x[b, ch, p]
        mu = s / (N * P)
        s = 0.0
        for b in range(N):
            for p in range(P):
                d = x[b, ch, p] - mu
                s += d * d
        mean[ch], var[ch] = mu, s / (N * P)


@njit(cache=True, error_model="numpy", nogil=True)
def batchnorm_train_bwd(x, go, mean, sd, gamma, gx, dgamma, dbeta):
    """Back through batch-norm with the batch statistics (mean, sd = sqrt(var + eps)) of x
    [N, C, P], per channel over the m = N P values: dbeta = sum go and dgamma = sum go x^ (float64),
    x^ = (x - mean) / sd, and gx = gamma / sd (go - dbeta / m - x^ dgamma / m)."""
    N, C, P = x.shape
    for ch in range(C):
        sb, sg = 0.0, 0.0
        for b in range(N):
            for p in range(P):
                sb += go[b, ch, p]
                sg += go[b, ch, p] * ((x[b, ch, p] - mean[ch]) / sd[ch])
        dbeta[ch], dgamma[ch] = sb, sg
        k, mb, mg = gamma[ch] / sd[ch], np.float32(sb / (N * P)), np.float32(sg / (N * P))
        for b in range(N):
            for p in range(P):
                gx[b, ch, p] = k * (go[b, ch, p] - mb - (x[b, ch, p] - mean[ch]) / sd[ch] * mg)


@njit(cache=True, error_model="numpy", nogil=True)
def round_fp16(a):
    """Rounds the float32 values of the 1-D array a in place to float16 values, as NumPy's
    float32 -> float16 -> float32 casts: ties to even, overflow to inf, float16 subnormals, NaN
    keeping the top 10 significand bits (checked on all 2**32 inputs)."""
    bits = a.view(np.uint32)
    for m in range(a.size):
        s = bits[m] & 0x80000000
        x = bits[m] ^ s
        if x >= 0x7f800000:
            if x > 0x7f800000:
                x = 0x7f800000 | max((x & 0x7fffff) >> 13, 1) << 13
        elif x >= 0x477ff000:  # rounds beyond 65504
            x = 0x7f800000
        elif x >= 0x38800000:  # normal: 10 significand bits
            x = (x + 0xfff + ((x >> 13) & 1)) & 0xffffe000
        else:  # subnormal: a multiple of 2**-24, the float32 spacing just above 0.5
            a[m] = (abs(a[m]) + np.float32(0.5)) - np.float32(0.5)
            x = bits[m]
        bits[m] = x | s
