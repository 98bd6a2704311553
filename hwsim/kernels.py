"""Numba kernels of the synaptic engines. Every kernel is event-driven: it loops over the non-zero
elements of its source tensor only (spikes in FP and WG, errors in BP) and scatters each event
along a contiguous row of weights, so zero spikes and zero errors cost nothing. Each kernel also
returns the synaptic operations it performed, counted where they land.

The innermost loops run over 1-D row views (contiguous slices), which LLVM vectorises, and
`error_model="numpy"` keeps division checks out of the loops. conv_fwd and conv_wg share their
loop nest on purpose: one kernel with a direction flag measured 20 % slower on vgg11.

Layouts are channels-last: activations [B, H, W, C]; a 1-D conv is a 2-D conv with H = 1.
Weights are passed pre-transposed so that the innermost loop runs over contiguous memory:
  FP  wf[cin_local, kh, kw, cout]   (= W.transpose(1, 2, 3, 0))
  BP  wb[cout, kh, kw, cin_local]   (= W.transpose(0, 2, 3, 1))
  WG  accumulates dwf in the FP layout.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def _tap(pos: int, pad: int, k: int, dil: int, stride: int, size: int) -> int:
    """Output index that input index `pos` reaches through kernel tap `k`, or -1."""
    num = pos + pad - k * dil
    if num < 0 or num % stride != 0:
        return -1
    o = num // stride
    return o if o < size else -1


@njit(cache=True, error_model="numpy")
def conv_fwd(x, wf, out, stride, pad, dil, groups):
    """out[b, oy, ox, k] += x[b, y, x, c] * wf[c % cin_g, i, j, k] for every non-zero input.
    Returns ops[b, group]: synaptic operations per output channel of each group."""
    B, H, W, C = x.shape
    cin_g, KH, KW, COUT = wf.shape
    cog = COUT // groups
    HO, WO = out.shape[1], out.shape[2]
    ops = np.zeros((B, groups), dtype=np.int64)
    for b in range(B):
        for y in range(H):
            for xx in range(W):
                for c in range(C):
                    v = x[b, y, xx, c]
                    if v == 0:
                        continue
                    g = c // cin_g
                    cl = c - g * cin_g
                    k0 = g * cog
                    for i in range(KH):
                        oy = _tap(y, pad[0], i, dil[0], stride[0], HO)
                        if oy < 0:
                            continue
                        for j in range(KW):
                            ox = _tap(xx, pad[1], j, dil[1], stride[1], WO)
                            if ox < 0:
                                continue
                            ops[b, g] += 1
                            orow = out[b, oy, ox, k0:k0 + cog]
                            wrow = wf[cl, i, j, k0:k0 + cog]
                            for k in range(cog):
                                orow[k] += v * wrow[k]
    return ops


@njit(cache=True, error_model="numpy")
def conv_bwd(e, wb, gx, stride, pad, dil, groups):
    """gx[b, y, x, c] += e[b, oy, ox, k] * wb[k, i, j, c % cin_g] for every non-zero error.
    Returns ops[b, k]: synaptic operations per output channel."""
    B, HO, WO, COUT = e.shape
    _, KH, KW, cin_g = wb.shape
    H, W = gx.shape[1], gx.shape[2]
    cog = COUT // groups
    ops = np.zeros((B, COUT), dtype=np.int64)
    for b in range(B):
        for oy in range(HO):
            for ox in range(WO):
                for k in range(COUT):
                    v = e[b, oy, ox, k]
                    if v == 0:
                        continue
                    c0 = (k // cog) * cin_g
                    for i in range(KH):
                        y = oy * stride[0] - pad[0] + i * dil[0]
                        if y < 0 or y >= H:
                            continue
                        for j in range(KW):
                            xx = ox * stride[1] - pad[1] + j * dil[1]
                            if xx < 0 or xx >= W:
                                continue
                            ops[b, k] += cin_g
                            grow = gx[b, y, xx, c0:c0 + cin_g]
                            wrow = wb[k, i, j]
                            for c in range(cin_g):
                                grow[c] += v * wrow[c]
    return ops


@njit(cache=True, error_model="numpy")
def conv_wg(x, e, dwf, stride, pad, dil, groups):
    """dwf[c % cin_g, i, j, k] += x[b, y, x, c] * e[b, oy, ox, k] for every non-zero input.
    Returns ops[b, group] as conv_fwd."""
    B, H, W, C = x.shape
    cin_g, KH, KW, COUT = dwf.shape
    cog = COUT // groups
    HO, WO = e.shape[1], e.shape[2]
    ops = np.zeros((B, groups), dtype=np.int64)
    for b in range(B):
        for y in range(H):
            for xx in range(W):
                for c in range(C):
                    v = x[b, y, xx, c]
                    if v == 0:
                        continue
                    g = c // cin_g
                    cl = c - g * cin_g
                    k0 = g * cog
                    for i in range(KH):
                        oy = _tap(y, pad[0], i, dil[0], stride[0], HO)
                        if oy < 0:
                            continue
                        for j in range(KW):
                            ox = _tap(xx, pad[1], j, dil[1], stride[1], WO)
                            if ox < 0:
                                continue
                            ops[b, g] += 1
                            drow = dwf[cl, i, j, k0:k0 + cog]
                            erow = e[b, oy, ox, k0:k0 + cog]
                            for k in range(cog):
                                drow[k] += v * erow[k]
    return ops


@njit(cache=True, error_model="numpy")
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


@njit(cache=True, error_model="numpy")
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


@njit(cache=True, error_model="numpy")
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
