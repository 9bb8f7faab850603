#!/usr/bin/env python3
"""Makes the reference fixtures for crema's recurrent layers (Caffe's LSTM and RNN layers) in
fixtures/recurrent/<case>/, computed by an independent PyTorch implementation of Caffe's
formulas (BVLC master) in float64 with autograd. These are NOT produced by Caffe itself.

Semantics reproduced (x: (T, N, ...), cont: (T, N), optional x_static: (N, ...)):
  LSTM, params [W_xc (4H,D), b_c (4H), (W_xc_static (4H,S)), W_hc (4H,H)]:
    gate_t = W_hc (cont_t * h_{t-1}) + W_xc x_t + b_c [+ W_xc_static x_static]
    gate layout [i', f', o', g']; i = sig(i'), f = cont_t * sig(f'), o = sig(o'), g = tanh(g')
    c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t);  top 0 = h_1..h_T, (T, N, H)
  RNN, params [W_xh (H,D), b_h (H), (W_xh_static (H,S)), W_hh (H,H), W_ho (H,H), b_o (H)]:
    h_t = tanh(W_hh (cont_t * h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static])
    o_t = tanh(W_ho h_t + b_o);  top 0 = o_1..o_T, (T, N, H)
  Hidden state: without expose_hidden, h_T (and c_T) of a forward pass become h_0 (c_0) of the
  next one (zero before the first), as constants for backward. With expose_hidden the bottoms
  are [x, cont, (x_static), h_0, (c_0)] of shape (1, N, H) each, the extra tops are h_T (, c_T),
  nothing is carried, and h_0/c_0 get no gradient; only top 0's diff is back-propagated.

Each case runs two consecutive forward passes (different x, x_static, h_0/c_0, cont), then one
backward after pass 2 with a random diff for top 0 and parameter diffs starting from zero.
Inputs and weights are drawn from a fixed seed (uniform in [-1, 1], weights scaled by 0.5),
rounded to float32, computed in float64 and stored as float32 .npy (C order), with case.json
describing the files.

Self-checks run every time (the script exits non-zero if one fails):
  * autograd gradients against central finite differences (float64) for every case;
  * every forward pass against torch.nn.LSTM / torch.nn.RNN (gate order remapped, bias_hh = 0),
    run per stream and per segment between cont resets, with the static term folded into the
    bias and the carried / given initial state as (h0, c0).

Usage (from the repository root; needs torch and numpy):
  python3 tools/make_recurrent_fixtures.py [output_dir]     # default fixtures/recurrent
"""
import json
import os
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

TOL = {"abs": 1e-5, "rel": 1e-4}
NOTE = ("produced by tools/make_recurrent_fixtures.py, a PyTorch float64 reference of "
        "Caffe's formulas, not by Caffe")

CASES = [
    # name, type, H, x shape, x_static shape or None, expose_hidden, cont pass 1, cont pass 2
    ("lstm", "LSTM", 4, (3, 2, 3, 2), None, False,
     [[0, 0], [1, 1], [1, 0]], [[1, 0], [1, 1], [0, 1]]),
    ("lstm_static", "LSTM", 3, (4, 3, 5), (3, 2, 2), False,
     [[0, 0, 0], [1, 1, 0], [1, 0, 1], [0, 1, 1]],
     [[1, 0, 1], [1, 1, 1], [0, 1, 1], [1, 1, 0]]),
    ("lstm_expose", "LSTM", 3, (3, 2, 4), None, True,
     [[1, 0], [1, 1], [0, 1]], [[0, 1], [1, 0], [1, 1]]),
    ("rnn", "RNN", 4, (3, 2, 5), None, False,
     [[0, 0], [1, 1], [1, 0]], [[1, 0], [1, 1], [0, 1]]),
    ("rnn_static", "RNN", 3, (3, 2, 4), (2, 3), False,
     [[0, 0], [1, 1], [1, 0]], [[0, 1], [1, 1], [1, 0]]),
]


def f32(a):
    """Rounds to float32 and returns a float64 tensor holding exactly those values."""
    return torch.from_numpy(np.asarray(a, dtype=np.float32).astype(np.float64))


def uniform(rng, shape, scale=1.0):
    return f32(rng.uniform(-1.0, 1.0, size=shape) * scale)


def param_shapes(kind, H, D, S):
    if kind == "LSTM":
        shapes = [(4 * H, D), (4 * H,)]
        if S is not None:
            shapes.append((4 * H, S))
        shapes.append((4 * H, H))
    else:
        shapes = [(H, D), (H,)]
        if S is not None:
            shapes.append((H, S))
        shapes += [(H, H), (H, H), (H,)]
    return shapes


def forward(kind, H, params, x, cont, xs, h0, c0):
    """Caffe's recurrent forward. Returns (top0 (T,N,H), h_T (N,H), c_T (N,H) or None)."""
    T, N = x.shape[0], x.shape[1]
    xf = x.reshape(T, N, -1)
    static = xs is not None
    if kind == "LSTM":
        if static:
            W_xc, b_c, W_s, W_hc = params
        else:
            W_xc, b_c, W_hc = params
        xproj = xf @ W_xc.T + b_c  # (T, N, 4H)
        if static:
            xproj = xproj + (xs.reshape(N, -1) @ W_s.T)[None]
        h, c = h0, c0
        hs = []
        for t in range(T):
            ct = cont[t].reshape(N, 1)
            gate = (ct * h) @ W_hc.T + xproj[t]
            i = torch.sigmoid(gate[:, 0:H])
            f = ct * torch.sigmoid(gate[:, H:2 * H])
            o = torch.sigmoid(gate[:, 2 * H:3 * H])
            g = torch.tanh(gate[:, 3 * H:4 * H])
            c = f * c + i * g
            h = o * torch.tanh(c)
            hs.append(h)
        return torch.stack(hs), h, c
    if static:
        W_xh, b_h, W_s, W_hh, W_ho, b_o = params
    else:
        W_xh, b_h, W_hh, W_ho, b_o = params
    xproj = xf @ W_xh.T + b_h
    if static:
        xproj = xproj + (xs.reshape(N, -1) @ W_s.T)[None]
    h = h0
    os_ = []
    for t in range(T):
        ct = cont[t].reshape(N, 1)
        h = torch.tanh((ct * h) @ W_hh.T + xproj[t])
        os_.append(torch.tanh(h @ W_ho.T + b_o))
    return torch.stack(os_), h, None


def torch_module_reference(kind, H, params, x, cont, xs, h0, c0):
    """Same forward via torch.nn.LSTM / nn.RNN, per stream and per segment between resets."""
    T, N = x.shape[0], x.shape[1]
    xf = x.reshape(T, N, -1)
    D = xf.shape[2]
    static = xs is not None
    out = torch.zeros(T, N, H)
    hT = torch.zeros(N, H)
    cT = torch.zeros(N, H)
    with torch.no_grad():
        for n in range(N):
            if kind == "LSTM":
                W_x, b, W_h = params[0], params[1], params[-1]
                bias = b + (params[2] @ xs.reshape(N, -1)[n] if static else 0.0)
                # Caffe rows [i, f, o, g] -> torch rows [i, f, g, o]
                perm = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H),
                                  torch.arange(2 * H, 3 * H)])
                m = torch.nn.LSTM(D, H, num_layers=1)
                m.weight_ih_l0.copy_(W_x[perm])
                m.weight_hh_l0.copy_(W_h[perm])
                m.bias_ih_l0.copy_(bias[perm])
                m.bias_hh_l0.zero_()
            else:
                W_x, b = params[0], params[1]
                W_hh, W_ho, b_o = params[-3], params[-2], params[-1]
                bias = b + (params[2] @ xs.reshape(N, -1)[n] if static else 0.0)
                m = torch.nn.RNN(D, H, num_layers=1, nonlinearity="tanh")
                m.weight_ih_l0.copy_(W_x)
                m.weight_hh_l0.copy_(W_hh)
                m.bias_ih_l0.copy_(bias)
                m.bias_hh_l0.zero_()
            h = h0[n].clone()
            c = c0[n].clone() if c0 is not None else None
            t = 0
            while t < T:
                if cont[t, n] == 0:
                    h = torch.zeros(H)
                    c = torch.zeros(H) if c is not None else None
                e = t + 1
                while e < T and cont[e, n] != 0:
                    e += 1
                seg = xf[t:e, n:n + 1]
                if kind == "LSTM":
                    y, (hh, cc) = m(seg, (h.view(1, 1, H), c.view(1, 1, H)))
                    out[t:e, n] = y[:, 0]
                    c = cc.view(H)
                else:
                    y, hh = m(seg, h.view(1, 1, H))
                    out[t:e, n] = torch.tanh(y[:, 0] @ W_ho.T + b_o)
                h = hh.view(H)
                t = e
            hT[n] = h
            if c is not None:
                cT[n] = c
    return out, hT, (cT if kind == "LSTM" else None)


def check_close(what, got, want, tol=1e-10):
    err = (got - want).abs().max().item()
    if not err <= tol:
        sys.exit("make_recurrent_fixtures: %s differs by %g" % (what, err))
    return err


def finite_difference_check(name, loss_fn, leaves, eps=1e-6):
    """Central differences of loss_fn w.r.t. every element of every leaf."""
    worst = 0.0
    for k, leaf in enumerate(leaves):
        (g,) = torch.autograd.grad(loss_fn(), [leaf])
        num = torch.zeros_like(leaf)
        flat = leaf.data.view(-1)
        for j in range(flat.numel()):
            old = flat[j].item()
            flat[j] = old + eps
            lp = loss_fn().item()
            flat[j] = old - eps
            lm = loss_fn().item()
            flat[j] = old
            num.view(-1)[j] = (lp - lm) / (2 * eps)
        err = ((g - num).abs() / (1.0 + num.abs())).max().item()
        worst = max(worst, err)
        if err > 1e-7:
            sys.exit("make_recurrent_fixtures: %s leaf %d gradient off by %g" % (name, k, err))
    return worst


def save(d, fname, t):
    np.save(os.path.join(d, fname), np.ascontiguousarray(
        t.detach().numpy().astype(np.float32)))
    return fname


def make_case(outdir, seed, name, kind, H, xshape, xsshape, expose, cont1, cont2):
    rng = np.random.RandomState(seed)
    T, N = xshape[0], xshape[1]
    D = int(np.prod(xshape[2:]))
    S = int(np.prod(xsshape[1:])) if xsshape is not None else None
    params = [uniform(rng, s, 0.5).requires_grad_(True) for s in param_shapes(kind, H, D, S)]
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)

    h_state = torch.zeros(N, H)
    c_state = torch.zeros(N, H) if kind == "LSTM" else None
    passes = []
    report = []
    for p, cont_list in ((1, cont1), (2, cont2)):
        cont = f32(cont_list)
        x = uniform(rng, xshape).requires_grad_(True)
        xs = uniform(rng, xsshape).requires_grad_(True) if xsshape is not None else None
        if expose:
            h0 = uniform(rng, (1, N, H)).view(N, H)
            c0 = uniform(rng, (1, N, H)).view(N, H) if kind == "LSTM" else None
        else:
            h0, c0 = h_state, c_state
        top0, hT, cT = forward(kind, H, params, x, cont, xs, h0, c0)
        # Cross-check against torch.nn.LSTM / nn.RNN.
        rt, rh, rc = torch_module_reference(kind, H, [q.detach() for q in params], x.detach(),
                                            cont, xs.detach() if xs is not None else None,
                                            h0, c0)
        e = check_close("%s pass %d top0 vs torch.nn" % (name, p), top0.detach(), rt)
        e = max(e, check_close("%s pass %d h_T vs torch.nn" % (name, p), hT.detach(), rh))
        if kind == "LSTM":
            e = max(e, check_close("%s pass %d c_T vs torch.nn" % (name, p), cT.detach(), rc))
        report.append("pass %d vs torch.nn max err %.2e" % (p, e))

        inputs = {"x": save(d, "p%d_x.npy" % p, x), "cont": save(d, "p%d_cont.npy" % p, cont)}
        if xs is not None:
            inputs["x_static"] = save(d, "p%d_x_static.npy" % p, xs)
        outputs = {"top0": save(d, "p%d_top0.npy" % p, top0)}
        if expose:
            inputs["h_0"] = save(d, "p%d_h_0.npy" % p, h0.view(1, N, H))
            if kind == "LSTM":
                inputs["c_0"] = save(d, "p%d_c_0.npy" % p, c0.view(1, N, H))
            outputs["h_T"] = save(d, "p%d_h_T.npy" % p, hT.view(1, N, H))
            if kind == "LSTM":
                outputs["c_T"] = save(d, "p%d_c_T.npy" % p, cT.view(1, N, H))
        else:
            # Carried to the next pass as constants (no gradient across passes).
            h_state = hT.detach()
            c_state = cT.detach() if cT is not None else None
        passes.append({"inputs": inputs, "outputs": outputs})
        last = (x, xs, cont, h0, c0, top0)

    # Backward after pass 2 only, from top 0's diff.
    x, xs, cont, h0, c0, top0 = last
    top_diff = uniform(rng, top0.shape)
    leaves = [x] + ([xs] if xs is not None else []) + params
    grads = torch.autograd.grad((top0 * top_diff).sum(), leaves)
    input_grads = {"x": save(d, "grad_x.npy", grads[0])}
    if xs is not None:
        input_grads["x_static"] = save(d, "grad_x_static.npy", grads[1])
    pg = grads[len(leaves) - len(params):]

    def loss():
        return (forward(kind, H, params, x, cont, xs, h0, c0)[0] * top_diff).sum()

    fd = finite_difference_check(name, loss, leaves)
    report.append("finite differences max rel err %.2e" % fd)

    meta = {
        "type": kind,
        "num_output": H,
        "expose_hidden": expose,
        "static": xs is not None,
        "passes": passes,
        "params": [save(d, "param_%d.npy" % k, q) for k, q in enumerate(params)],
        "backward": {
            "top_diff": save(d, "top_diff.npy", top_diff),
            "input_grads": input_grads,
            "param_grads": [save(d, "pgrad_%d.npy" % k, g) for k, g in enumerate(pg)],
        },
        "tolerance": TOL,
        "note": NOTE,
    }
    with open(os.path.join(d, "case.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
        fh.write("\n")
    print("%-12s %s" % (name, "; ".join(report)))


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join("fixtures", "recurrent")
    for k, case in enumerate(CASES):
        make_case(outdir, 1000 + k, *case)


if __name__ == "__main__":
    main()
