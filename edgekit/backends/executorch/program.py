"""Read an ExecuTorch .pte as stored: its inputs and outputs, the ops left to the portable kernels, and each XNNPACK
delegate's graph (decoded from the delegate payload with ExecuTorch's own flatc and XNNPACK schema).

Counts come from here, never from the torch model: MACs per conv / fully-connected / matmul node with the precision
of its activation input (qint8 -> int8), and which MACs XNNPACK runs and which the portable kernels run.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.backends.base import weight_int8_share
from edgekit.errors import BadInputError

# ScalarType codes of executorch/schema/scalar_type.fbs that an I/O tensor can have here
_SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
                 11: "bool", 15: "bfloat16"}
_XNN_ITEMSIZE = {"fp32": 4, "fp16": 2, "qint8": 1, "quint8": 1, "qcint8": 1, "qdint8": 1, "qcint4": 0.5, "qbint4": 0.5,
                 "qint32": 4, "qcint32": 4}
_XNN_MAC_NODES = ("XNNConv2d", "XNNDepthwiseConv2d", "XNNConvTranspose2d", "XNNFullyConnected", "XNNBatchMatrixMultiply")
# portable kernels that multiply and accumulate, and the tensor argument whose last dimension is the reduction length
# (linear: weight [out, in]; addmm: (bias, mat1, mat2); convolution: counted from its whole weight)
_PORTABLE_MAC_OPS = {"aten::convolution": 1, "aten::linear": 1, "aten::addmm": 1, "aten::mm": 0, "aten::bmm": 0}


@dataclass
class Program:
    layers: list[dict]  # one row per MAC-carrying node: XNNPACK's and the portable kernels'
    portable: list[str]  # every portable kernel call, in execution order (operator names)
    delegates: list[str]  # backend id of each delegate call
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)

    def delegated_share(self) -> float:
        """Share of the program's MACs that run inside a delegate (1.0 when it has no MACs at all)."""
        total = sum(r["macs"] for r in self.layers)
        return sum(r["macs"] for r in self.layers if r["delegated"]) / total if total else 1.0

    def int8_share(self) -> tuple[float, list[dict]]:
        """(share of the MACs against stored weights whose activation input is INT8, the MAC rows of matmuls of two
        activations): backends.base.weight_int8_share."""
        return weight_int8_share(self.layers)

    def portable_ops(self) -> dict[str, int]:
        return dict(Counter(self.portable))

    def io(self) -> dict:
        return {"inputs": self.inputs, "outputs": self.outputs}


def read(path: Path) -> Program:
    path = Path(path)
    return _read(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read(path: str, mtime_ns: int) -> Program:
    from executorch.exir._serialize._program import deserialize_pte_binary

    data = Path(path).read_bytes()
    check_identifier(path, data[:8])
    try:
        pte = deserialize_pte_binary(data)
    except Exception:  # flatbuffers reads past the end of a truncated file with struct.error and the like
        raise _damaged(path, f"{len(data)} bytes, truncated or damaged") from None
    plan = pte.program.execution_plan[0]
    values = plan.values
    rows, portable, delegates = [], [], []
    for instruction in plan.chains[0].instructions:
        args = instruction.instr_args
        kind = type(args).__name__
        if kind == "KernelCall":
            op = plan.operators[args.op_index].name
            portable.append(op)
            macs = _portable_macs(op, [values[i].val for i in args.args])
            if macs:
                rows.append(_portable_row(op, len(portable) - 1, [values[i].val for i in args.args], macs))
        elif kind == "DelegateCall":
            delegate = plan.delegates[args.delegate_index]
            delegates.append(delegate.id)
            if delegate.id == "XnnpackBackend":
                payload = pte.program.backend_delegate_data[delegate.processed.index].data
                try:
                    rows += _xnnpack_rows(xnnpack_graph(payload), len(delegates) - 1)
                except (subprocess.CalledProcessError, ValueError, KeyError, IndexError, TypeError) as exc:
                    # flatc refuses a damaged payload; one that still parses can lack fields or point past the values
                    why = f"XNNPACK delegate {len(delegates) - 1} damaged, {type(exc).__name__}"
                    raise _damaged(path, why) from None
    return Program(layers=rows, portable=portable, delegates=delegates,
                   inputs=[_io_entry(values[i].val, f"input_{n}") for n, i in enumerate(plan.inputs)],
                   outputs=[_io_entry(values[i].val, f"output_{n}") for n, i in enumerate(plan.outputs)])


def check_identifier(path: Path | str, head: bytes | None = None) -> None:
    """Refuse a file without a .pte's flatbuffer file identifier ("ET" and two digits at bytes 4-8) before the
    runtime sees it: the runtime logs a wrong identifier as is, and one that is not UTF-8 aborts the Python process
    in the log callback of ExecuTorch's bindings (executorch 1.5.1)."""
    if head is None:
        try:
            with open(path, "rb") as f:
                head = f.read(8)
        except OSError as exc:
            raise BadInputError(f"{path}: cannot read it ({exc.strerror}); fix: pass the path of an ExecuTorch "
                                ".pte file") from None
    if not re.fullmatch(rb"ET[0-9]{2}", head[4:8]):
        raise _damaged(path, "no ExecuTorch file identifier in its first 8 bytes")


def _damaged(path: Path | str, why: str) -> BadInputError:
    return BadInputError(f"{Path(path).name}: not a readable ExecuTorch program ({why}); fix: rebuild it with "
                         "edgekit compile --target executorch")


def _io_entry(tensor, name: str) -> dict:
    return {"name": name, "dtype": _SCALAR_TYPES.get(int(tensor.scalar_type), str(tensor.scalar_type)),
            "shape": [int(d) for d in tensor.sizes], "quantization": None}


def _sizes(value) -> list[int] | None:
    return [int(d) for d in value.sizes] if type(value).__name__ == "Tensor" else None


def _portable_macs(op: str, args: list) -> int:
    if op not in _PORTABLE_MAC_OPS:
        return 0
    shapes = [s for s in (_sizes(a) for a in args) if s is not None]
    out = shapes[-1]  # the out= tensor is the last argument of every ExecuTorch kernel
    if op == "aten::convolution":  # weight [cout, cin/groups, kh, kw]
        return int(np.prod(out)) * int(np.prod(shapes[1][1:]))
    return int(np.prod(out)) * shapes[_PORTABLE_MAC_OPS[op]][-1]


def _portable_row(op: str, index: int, args: list, macs: int) -> dict:
    shapes = [s for s in (_sizes(a) for a in args) if s is not None]
    weight = shapes[1] if len(shapes) > 2 else []
    dtype = _SCALAR_TYPES.get(int(args[0].scalar_type), "float32") if _sizes(args[0]) else "float32"
    return {"op": op, "layer": f"portable[{index}]", "delegated": False, "macs": macs,
            "precision": {"float16": "fp16", "int8": "int8", "uint8": "int8"}.get(dtype, "fp32"),
            "activation_dtype": dtype, "weight_elems": int(np.prod(weight)) if weight else 0,
            "weight_bytes": int(np.prod(weight)) * 4 if weight else 0,
            "act_in_elems": int(np.prod(shapes[0])), "act_out_elems": int(np.prod(shapes[-1])), "act_bytes_per_elem": 4}


def xnnpack_graph(payload: bytes) -> dict:
    """An XNNPACK delegate payload (XNNHeader + XNNGraph flatbuffer) as JSON, decoded by flatc with XNNPACK's schema."""
    import executorch.backends.xnnpack.serialization as serialization
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader
    from executorch.exir._serialize._flatbuffer import _get_flatc_path

    header = XNNHeader.from_bytes(payload[:XNNHeader.EXPECTED_LENGTH])
    flatbuffer = payload[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size]
    schema = Path(list(serialization.__path__)[0]) / "schema.fbs"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "graph.bin").write_bytes(flatbuffer)
        subprocess.run([_get_flatc_path(), "--json", "--strict-json", "--defaults-json", "--raw-binary", "-o", tmp,
                        str(schema), "--", str(Path(tmp) / "graph.bin")], check=True, capture_output=True)
        text = (Path(tmp) / "graph.json").read_text()
    # flatc writes non-finite clamp bounds as bare inf/nan, which JSON has no literal for
    return json.loads(re.sub(r"(?<=[:\[,\s])-?(inf|nan)\b", "null", text))


def _xnn_values(graph: dict) -> list[tuple[str, list[int]]]:
    """(datatype without its xnn_datatype_ prefix, dims) of every XNNPACK value."""
    out = []
    for value in graph["xvalues"]:
        union = value["xvalue_union"]
        tensor = union.get("tensor_value", union)
        out.append((tensor["datatype"].removeprefix("xnn_datatype_"), [int(d) for d in tensor.get("dims") or []]))
    return out


def _xnnpack_rows(graph: dict, delegate: int) -> list[dict]:
    values = _xnn_values(graph)
    rows = []
    for index, node in enumerate(graph["xnodes"]):
        kind, n = node["xnode_union_type"], node["xnode_union"]
        if kind not in _XNN_MAC_NODES:
            continue
        act_dtype, act_dims = values[n["input1_id"]]
        out_dims = values[n["output_id"]][1]
        weight_dtype, weight_dims = values[n["filter_id"]] if "filter_id" in n else values[n["input2_id"]]
        out = int(np.prod(out_dims))
        if kind in ("XNNConv2d", "XNNDepthwiseConv2d"):
            macs = out * n["kernel_height"] * n["kernel_width"] * n["group_input_channels"]
        elif kind == "XNNConvTranspose2d":  # every input pixel meets the whole kernel
            macs = int(np.prod(act_dims)) * n["kernel_height"] * n["kernel_width"] * n["group_output_channels"]
        else:  # fully connected (weights [out, in]) and batch matmul reduce over the input's last dimension
            macs = out * act_dims[-1]
        weights = int(np.prod(weight_dims)) if "filter_id" in n else 0
        rows.append({"op": kind.removeprefix("XNN"), "layer": f"xnnpack[{delegate}].{index}", "delegated": True,
                     "macs": macs, "precision": _precision(act_dtype), "activation_dtype": act_dtype,
                     "weight_dtype": weight_dtype if weights else None, "weight_elems": weights,
                     "weight_bytes": int(weights * _XNN_ITEMSIZE.get(weight_dtype, 4)),
                     "act_in_elems": int(np.prod(act_dims)), "act_out_elems": out,
                     "act_bytes_per_elem": _XNN_ITEMSIZE.get(act_dtype, 4)})
    return rows


def _precision(xnn_dtype: str) -> str:
    if xnn_dtype in ("qint8", "quint8", "qdint8"):
        return "int8"
    return "fp16" if xnn_dtype == "fp16" else "fp32"
