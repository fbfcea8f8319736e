"""numpy fixed-point mirror of Lava's SDNN network built by netx 0.6.0 (Loihi2SimCfg fixed_pt), read from the same
netx HDF5; compares its per-step messages with run_lava.py's, layer by layer.

    python mirror.py DIR            (numpy + h5py; any venv)

Per step t (all int arithmetic; int32 wrap where Lava's int32 arrays wrap):
  input Delta:   act_new = x << 12;  delta = act_new - act + residue
  SigmaDelta:    sigma += a_in (int32);  act_new = max(sigma + (bias_mant << 12), 0);  delta = act_new - act + residue
  both:          s = delta if |delta| >= vThMant << 12 else 0;  residue = delta - s;  act = act_new;  msg = s >> 6
  Sigma:         sigma += a_in;  msg = sigma
  synapses:      a_in(t) = W * msg_prev_layer(t - 1) (one-step buffer; zero at t = 1)
                 conv: exact integer correlation with the torch-layout kernel, then signed 24-bit WRAP
                 dense: ((W << sb) . msg) as int32 (wraps), then >> sb  (sb from netx's optimize_weight_bits)
"""

import sys
from pathlib import Path

import h5py
import numpy as np

SPIKE_EXP, STATE_EXP = 6, 6


def wrap(x: np.ndarray, bits: int) -> np.ndarray:
    base = 1 << bits
    return (x + base // 2) % base - base // 2


def optimize_shift(w: np.ndarray) -> int:
    """scale_bits of lava.lib.dl.netx.utils.optimize_weight_bits (weights already in [-256, 254]); dense only."""
    mx, mn = w.max(), w.min()
    if mx == 0 and mn == 0:
        raise ValueError("all-zero dense weights: netx's optimize_weight_bits divides by zero")
    if mx < 0:
        scale, signed = -256 / mn, 0
    elif mn >= 0:
        scale, signed = 255 / mx, 0
    else:
        scale, signed = min(127 / mx, -128 / mn), 1
    return int(np.floor(np.log2(scale)) + signed)


def read(path: Path) -> list[dict]:
    layers, flatten = [], False
    with h5py.File(path, "r") as f:
        for i in range(len(f["layer"])):
            g = f["layer"][str(i)]
            kind = g["type"][()].decode()
            if kind == "flatten":
                flatten = True
                continue
            nrn = g["neuron"]
            lay = {"kind": kind, "shape": tuple(int(s) for s in g["shape"][()]), "flatten": flatten,
                   "neuron": "sigma" if "sigma_output" in nrn else ("delta" if kind == "input" else "sigmadelta"),
                   "vth": int(nrn["vThMant"][()]) if "vThMant" in nrn else None}
            if kind != "input":
                lay["weight"] = g["weight"][()].astype(np.int64)
                lay["bias"] = g["bias"][()].astype(np.int64) if "bias" in g else None
            if kind == "conv":
                lay["stride"] = tuple(int(s) for s in g["stride"][()])
                lay["padding"] = tuple(int(s) for s in g["padding"][()])
            if kind == "dense":
                lay["sb"] = optimize_shift(np.clip(lay["weight"], -256, 254))
            layers.append(lay)
            flatten = False
    return layers


def conv(x: np.ndarray, w: np.ndarray, stride, padding) -> np.ndarray:
    """Exact int64 cross-correlation, torch semantics. x (C, H, W), w (O, C, kh, kw) -> (O, H', W')."""
    xp = np.pad(x, ((0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
    o, c, kh, kw = w.shape
    ho = (xp.shape[1] - kh) // stride[0] + 1
    wo = (xp.shape[2] - kw) // stride[1] + 1
    out = np.zeros((o, ho, wo), np.result_type(x, w))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i:i + stride[0] * ho:stride[0], j:j + stride[1] * wo:stride[1]]  # (C, ho, wo)
            out += np.einsum("oc,chw->ohw", w[:, :, i, j], patch)
    return out


def synapse(lay: dict, msg: np.ndarray) -> np.ndarray:
    if lay["kind"] == "conv":
        return wrap(conv(msg, lay["weight"], lay["stride"], lay["padding"]), 24)  # PyConvModelFixed: signed_clamp
    sb = lay["sb"]
    return wrap((lay["weight"] @ msg.reshape(-1)) << sb, 32) >> sb  # (W << sb) . s in int32, then >> sb


def run(layers: list[dict], inputs: np.ndarray) -> list[np.ndarray]:
    """inputs (T, C, H, W) ints -> per layer (T, *shape) messages."""
    n = len(layers)
    state = [{k: np.zeros(lay["shape"], np.int64) for k in ("sigma", "act", "residue")} for lay in layers]
    prev = [np.zeros(lay["shape"], np.int64) for lay in layers]  # messages of the previous step
    out = [[] for _ in layers]
    for x in inputs:
        cur = []
        for k, lay in enumerate(layers):
            st = state[k]
            if lay["neuron"] == "delta":
                act = wrap(x.astype(np.int64) << (SPIKE_EXP + STATE_EXP), 32)
            else:
                a_in = synapse(lay, prev[k - 1])
                st["sigma"] = wrap(st["sigma"] + a_in, 32)
                if lay["neuron"] == "sigma":
                    cur.append(st["sigma"].copy())
                    continue
                bias = np.zeros(lay["shape"], np.int64) if lay["bias"] is None else (
                    lay["bias"].reshape(-1, *([1] * (len(lay["shape"]) - 1))) * np.ones(lay["shape"], np.int64))
                act = np.maximum(wrap(st["sigma"] + (bias << (SPIKE_EXP + STATE_EXP)), 32), 0)
            delta = wrap(act - st["act"] + st["residue"], 32)
            s = np.where(np.abs(delta) >= lay["vth"] << (SPIKE_EXP + STATE_EXP), delta, 0)
            st["residue"] = delta - s
            st["act"] = act
            cur.append(s >> STATE_EXP)  # arithmetic shift: floors negative messages
        for k in range(n):
            out[k].append(cur[k])
        prev = cur
    return [np.stack(o) for o in out]


def ideal(layers: list[dict], x: np.ndarray) -> np.ndarray:
    """The float network the integers stand for (no thresholds, no floors): out = W3 . m2, m_k = act_k / 64."""
    m = x.astype(np.float64) * (1 << SPIKE_EXP)
    for lay in layers[1:]:
        w = lay["weight"].astype(np.float64)
        a = conv(m, w, lay["stride"], lay["padding"]) if lay["kind"] == "conv" else w @ m.reshape(-1)
        if lay["neuron"] == "sigma":
            return a
        b = 0 if lay["bias"] is None else lay["bias"].reshape(-1, *([1] * (a.ndim - 1))) * 4096.0
        m = np.maximum(a + b, 0) / (1 << STATE_EXP)
    return m


def report_settling(layers, inputs, mine) -> None:
    """When the readout stops changing after each input change, and how far it is from the threshold-free ideal."""
    out = mine[-1].reshape(len(inputs), -1)
    changes = [0] + [t for t in range(1, len(inputs)) if not np.array_equal(inputs[t], inputs[t - 1])]
    for c, start in enumerate(changes):
        end = changes[c + 1] if c + 1 < len(changes) else len(inputs)
        last_change = max([t for t in range(start, end) if t == 0 or not np.array_equal(out[t], out[t - 1])] or [start])
        x = inputs[start]
        if end - start >= 2:
            ref = ideal([dict(l) for l in layers], x).reshape(-1)  # float network on the input held from `start`
            err = np.abs(out[end - 1] - ref).max() / max(np.abs(ref).max(), 1)
            print(f"  input set at step {start + 1}: readout last changed at step {last_change + 1} "
                  f"(+{last_change - start} steps); held to step {end}: max |Lava - ideal| / max|ideal| = {err:.2e}")


def main(folder: str) -> int:
    folder = Path(folder)
    layers = read(folder / "network.net")
    inputs = np.load(folder / "inputs.npz")["inputs"]
    mine = run(layers, inputs)
    lava = np.load(folder / "lava_out.npz")
    ok = True
    for k, m in enumerate(mine):
        theirs = lava[f"msg_{k}"]
        diff = int((m != theirs).sum()) if m.shape == theirs.shape else -1
        ok &= diff == 0
        nz = (theirs.reshape(len(theirs), -1) != 0).sum(1)
        first = int(np.argmax(nz > 0)) + 1 if nz.any() else None
        print(f"layer {k} ({layers[k]['kind']}/{layers[k]['neuron']}, shape {layers[k]['shape']}): "
              f"{diff} of {m.size} messages differ; {int((theirs != 0).sum())} nonzero; first nonzero at step {first}; "
              f"max |msg| {int(np.abs(theirs).max())}")
        if layers[k]["kind"] == "dense" and f"lava_dense_weights_{k}" in lava.files:
            held = lava[f"lava_dense_weights_{k}"]
            print(f"    dense weights Lava holds = file << {layers[k]['sb']}: "
                  f"{np.array_equal(held, layers[k]['weight'] << layers[k]['sb'])}")
    report_settling(layers, inputs, mine)
    print("MATCH: bit for bit, every message of every layer at every step" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
