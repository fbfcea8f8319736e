"""Which optional fields break netx 0.6.0's SDNN loading? python -I check_fields.py PROTO_DIR"""
import shutil, sys, tempfile
from pathlib import Path
import h5py, numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import run_lava

def main(proto):
    run_lava.stub_torch_only_modules()
    from lava.lib.dl.netx.hdf5 import Network
    cases = {
        "activation='relu' on every SDNN layer (slayer writes it)": lambda f: [f[f"layer/{i}/neuron"].create_dataset("activation", data=np.bytes_("relu")) for i in (0, 1, 3)],
        "messageBits=16 on the conv neuron": lambda f: f["layer/1/neuron"].create_dataset("messageBits", data=16),
        "bias on the sigma_output layer": lambda f: f["layer/4"].create_dataset("bias", data=np.zeros(4, np.int64)),
        "all-zero dense weights": lambda f: f["layer/3/weight"].__setitem__(..., 0),
        "vThMant=0 on conv": lambda f: f["layer/1/neuron/vThMant"].__setitem__((), 0) if f["layer/1/neuron/vThMant"].shape == () else None,
    }
    for name, edit in cases.items():
        tmp = Path(tempfile.mkdtemp()) / "n.net"
        shutil.copy(Path(proto) / "network.net", tmp)
        with h5py.File(tmp, "r+") as f:
            edit(f)
        try:
            net = Network(net_config=str(tmp))
            info = [type(l.neuron).__name__ + f"/out_bits={l.output_message_bits!r}"[:40] for l in net.layers]
            print(f"OK    {name}: {info}")
        except Exception as exc:
            print(f"FAILS {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")

if __name__ == "__main__":
    main(sys.argv[1])
