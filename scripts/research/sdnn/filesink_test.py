"""Does a sink's process model writing its own .npy (no Var.get) work and save the ~24 us/value Var.get cost?

    /work/main/.venv-lava/bin/python -I filesink_test.py DIR
"""
import sys
import time
from pathlib import Path

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

sys.path.insert(0, str(Path(__file__).parent))
import run_lava  # noqa: E402


class FileRecord(AbstractProcess):
    def __init__(self, *, shape: tuple, steps: int, path: str) -> None:
        super().__init__(shape=shape, steps=steps, path=path)
        self.a_in = InPort(shape=shape)


@implements(proc=FileRecord, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFileRecordModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.kept = []

    def run_spk(self) -> None:
        self.kept.append(self.a_in.recv().copy())
        if self.time_step == self.proc_params["steps"]:  # last step: write from inside the model's process
            np.save(self.proc_params["path"], np.stack(self.kept, -1))


def main(folder: str) -> None:
    run_lava.stub_torch_only_modules()
    from lava.lib.dl.netx.hdf5 import Network
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    folder = Path(folder).resolve()
    inputs = np.load(folder / "inputs.npz")["inputs"]
    steps = len(inputs)
    net = Network(net_config=str(folder / "network.net"))
    layers = list(net.layers)
    src = run_lava.Schedule(data=np.transpose(inputs, (3, 2, 1, 0)).astype(np.int32))
    src.s_out.connect(layers[0].neuron.a_in)
    for k, lay in enumerate(layers):
        lay.out.connect(FileRecord(shape=lay.out.shape, steps=steps, path=str(folder / f"file_msg_{k}.npy")).a_in)
    t0 = time.perf_counter()
    net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    t_run = time.perf_counter() - t0
    net.stop()
    ref = np.load(folder / "lava_out.npz")
    same = [np.array_equal(run_lava.to_chw(np.load(folder / f"file_msg_{k}.npy").astype(np.int64)), ref[f"msg_{k}"])
            for k in range(len(layers))]
    print(f"file sink: run {t_run:.2f} s for {steps} steps (compile included); equal to Var.get recording: {same}")


if __name__ == "__main__":
    main(sys.argv[1])
