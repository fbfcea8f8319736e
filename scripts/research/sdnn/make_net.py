"""Write a tiny sigma-delta netx HDF5 (input -> conv SDNN -> flatten -> dense SDNN -> dense Sigma readout) plus the
per-step input schedule. Integers only; every field netx 0.6.0 reads for SDNN is written, nothing else it would choke on.

    python make_net.py OUT_DIR [--wrap] [--vth IN,CONV,DENSE]      (any Python with numpy + h5py)

Shapes in the file are (C, H, W) / (N,) like edgekit's CUBA writer: netx reverses them to (x, y, c).
"""

import sys
from pathlib import Path

import h5py
import numpy as np

C0, H0, W0 = 2, 5, 6            # input (non-square to catch x/y mix-ups)
C1, K, STRIDE, PAD = 3, 3, (1, 2), (1, 1)   # conv: stride/padding as (H, W) like torch
H1 = (H0 + 2 * PAD[0] - K) // STRIDE[0] + 1
W1 = (W0 + 2 * PAD[1] - K) // STRIDE[1] + 1
N2, N3 = 7, 4                   # dense SDNN, dense Sigma readout
VTH = {"input": 6, "conv": 25, "dense": 60}  # vThMant per layer (Lava compares |delta| >= vThMant << 12)


def ds(g, name, value):
    g.create_dataset(name, data=np.bytes_(value) if isinstance(value, str) else np.asarray(value), track_times=False)


def write(path: Path, params: dict) -> None:
    with h5py.File(path, "w") as f:
        sim = f.create_group("simulation")
        ds(sim, "Ts", 1)
        ds(sim, "tSample", params["inputs"].shape[0])
        lay = f.create_group("layer")
        g = lay.create_group("0")
        ds(g, "type", "input")
        ds(g, "shape", [C0, H0, W0])
        ds(g, "neuron/type", "SDNN")
        ds(g, "neuron/vThMant", VTH["input"])
        g = lay.create_group("1")
        ds(g, "type", "conv")
        ds(g, "shape", [C1, H1, W1])
        ds(g, "weight", params["w1"])        # torch layout (out, in, kh, kw)
        ds(g, "bias", params["b1"])          # per output channel, bias_mant (Lava multiplies by 2^12)
        ds(g, "stride", list(STRIDE))
        ds(g, "padding", list(PAD))
        ds(g, "dilation", [1, 1])
        ds(g, "groups", 1)
        ds(g, "neuron/type", "SDNN")
        ds(g, "neuron/vThMant", VTH["conv"])
        g = lay.create_group("2")
        ds(g, "type", "flatten")
        ds(g, "shape", [C1 * H1 * W1])
        g = lay.create_group("3")
        ds(g, "type", "dense")
        ds(g, "shape", [N2])
        ds(g, "weight", params["w2"])        # (out, in), in = torch's C,H,W flatten order
        ds(g, "bias", params["b2"])
        ds(g, "neuron/type", "SDNN")
        ds(g, "neuron/vThMant", VTH["dense"])
        g = lay.create_group("4")
        ds(g, "type", "dense")
        ds(g, "shape", [N3])
        ds(g, "weight", params["w3"])        # no bias: netx passes it to Sigma(), which has no bias argument
        ds(g, "neuron/type", "SDNN")
        ds(g, "neuron/sigma_output", True)   # presence of the key selects Sigma (no ReLU, no delta)


def main(out: str, wrap: bool = False) -> None:
    rng = np.random.default_rng(7)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hi = 300 if wrap else 40  # --wrap: inputs large enough that the conv sum passes 2^23 (Lava wraps it)
    a = rng.integers(-hi, hi + 1, (C0, H0, W0))
    b = rng.integers(-hi, hi + 1, (C0, H0, W0))
    steps = [a] * 8 + [b] * 8 + [b + (t * 3) for t in range(1, 9)] + [b + 24] * 6  # constant, step, ramp, hold
    params = {
        "inputs": np.stack(steps).astype(np.int64),                  # (T, C, H, W) ints fed to the input Delta
        "w1": rng.integers(-128, 128, (C1, C0, K, K)),
        "b1": rng.integers(-40, 41, C1),
        "w2": rng.integers(-128, 128, (N2, C1 * H1 * W1)),
        "b2": rng.integers(-300, 301, N2),
        "w3": rng.integers(-128, 128, (N3, N2)) * 2,              # even, range [-256, 254]: netx's weight optimiser path
    }
    write(out / "network.net", params)
    np.savez(out / "inputs.npz", **params)
    print(f"wrote {out / 'network.net'}: input {C0}x{H0}x{W0}, conv {C1}x{H1}x{W1}, dense {N2}, sigma {N3}; "
          f"{len(steps)} steps")


if __name__ == "__main__":
    if "--vth" in sys.argv:
        VTH.update(zip(("input", "conv", "dense"), map(int, sys.argv[sys.argv.index("--vth") + 1].split(","))))
    main(sys.argv[1], "--wrap" in sys.argv[2:])
