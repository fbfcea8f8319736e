"""Read and edit .tflite flatbuffers with LiteRT's own schema (ai_edge_litert.schema_py_generated).

Reading gives per-op rows: op type, the PyTorch module it came from (litert-torch writes module paths into
tensor names), MACs from the weight and output shapes, and the precision the op computes in. Editing sets
the model's I/O types: a QUANTIZE op in front of an int8 input gives a float interface, one after a float
output gives an int8 interface.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV")
# ops that only move or convert data: never counted as float compute left in an INT8 model
_DATA_OPS = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "TRANSPOSE", "PAD", "SQUEEZE", "EXPAND_DIMS", "CONCATENATION",
             "SLICE", "STRIDED_SLICE", "GATHER", "PACK", "UNPACK", "SPLIT", "CAST", "SHAPE"}
_ITEMSIZE = {"float32": 4, "float16": 2, "int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8, "bool": 1}


def _schema():
    import ai_edge_litert.schema_py_generated as schema

    return schema


def read(path: Path):
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model(str(path))


def read_bytes(data: bytes):
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(data))


def write(model, path: Path) -> None:
    from ai_edge_litert.tools import flatbuffer_utils

    # read_model leaves buffers that the file held at an offset as bytes; the schema's Pack writes a numpy buffer in
    # one copy but any other sequence one Python call per byte (22 M calls, ~10 s, for GazeResNet18's weights).
    # Same bytes either way: both are uint8 vectors aligned to 1.
    for buf in model.buffers or []:
        if buf.data is not None and not isinstance(buf.data, np.ndarray):
            buf.data = np.frombuffer(bytes(buf.data), np.uint8)
    flatbuffer_utils.write_model(model, str(path))


def _names(enum) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def op_name(model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    return _names(_schema().BuiltinOperator).get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")


def dtype_name(tensor) -> str:
    return _names(_schema().TensorType)[tensor.type].lower()


def module_path(tensor_name: str) -> str:
    """litert-torch tensor name -> PyTorch module path: `...TinyGaze/...Sequential_features/...Conv2d_0;1` -> `features.0`.

    Fused ops join several names with ';'; the one ending in a Conv/Linear module names the layer."""
    parts = [p for p in tensor_name.split(";") if "/" in p]
    if not parts:
        return "(top level)"
    best = next((p for p in parts if p.rsplit("/", 1)[-1].split(".")[-1].startswith(("Conv", "Linear"))), parts[-1])
    attrs = [c.split(".")[-1].split("_", 1)[1] for c in best.split("/")[1:] if "_" in c.split(".")[-1]]
    return ".".join(attrs) or best


def _is_constant(model, tensor) -> bool:
    buf = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buf is not None and ((buf.data is not None and len(buf.data) > 0) or buf.offset > 1)


def layer_rows(model) -> list[dict]:
    """One row per op of the main subgraph: op, layer, precision, MACs, weight bytes, activation elements.

    Precision: int8 when the op's activation input is int8, float otherwise (fp16-stored weights are
    dequantized by a DEQUANTIZE op and computed in float32 by the CPU kernels)."""
    sg = model.subgraphs[0]
    tensors = sg.tensors
    producer = {o: op for op in sg.operators for o in op.outputs}
    rows = []
    for index, op in enumerate(sg.operators):
        name = op_name(model, op)
        inputs = [tensors[i] for i in op.inputs if i >= 0]
        out = tensors[op.outputs[0]]
        activations = [t for t in inputs if not _is_constant(model, t) and not _from_constant(model, t, producer, tensors)]
        weights = [t for t in inputs if t not in activations]
        act_dtype = dtype_name(activations[0]) if activations else dtype_name(out)
        stored = _stored_dtype(model, weights[0], producer, tensors) if weights else act_dtype
        # the last op's output carries the signature's name: then the weights' names tell the layer
        layer = next((module_path(t.name.decode()) for t in [out, *weights] if module_path(t.name.decode()) != "(top level)"),
                     "(top level)")
        rows.append({"index": index, "op": name, "layer": layer,
                     "precision": "int8" if act_dtype in ("int8", "uint8") else ("fp16" if stored == "float16" else "fp32"),
                     "activation_dtype": act_dtype, "weight_dtype": stored if weights else None,
                     "macs": _macs(name, [list(t.shape) for t in inputs], list(out.shape)),
                     "weight_elems": sum(int(np.prod(t.shape)) for t in weights if name not in _DATA_OPS),
                     "weight_bytes": sum(int(np.prod(t.shape)) * _ITEMSIZE.get(_stored_dtype(model, t, producer, tensors), 4)
                                         for t in weights if name not in _DATA_OPS),
                     "act_in_elems": int(np.prod(activations[0].shape)) if activations else 0,
                     "act_out_elems": int(np.prod(out.shape)),
                     "act_bytes_per_elem": _ITEMSIZE.get(act_dtype, 4)})
    return rows


def _from_constant(model, tensor, producer, tensors) -> bool:
    """A DEQUANTIZE of a stored constant (FP16 or INT8 weights kept compressed) is a weight, not an activation."""
    op = producer.get(_index(tensors, tensor))
    return op is not None and op_name(model, op) == "DEQUANTIZE" and _is_constant(model, tensors[op.inputs[0]])


def _stored_dtype(model, tensor, producer, tensors) -> str:
    op = producer.get(_index(tensors, tensor))
    if op is not None and op_name(model, op) == "DEQUANTIZE":
        return dtype_name(tensors[op.inputs[0]])
    return dtype_name(tensor)


def _index(tensors, tensor) -> int:
    return next(i for i, t in enumerate(tensors) if t is tensor)


def _macs(name: str, in_shapes: list[list[int]], out_shape: list[int]) -> int:
    out = int(np.prod(out_shape))
    if name == "CONV_2D":  # weights [cout, kh, kw, cin]
        return out * int(np.prod(in_shapes[1][1:]))
    if name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, cout]
        return out * in_shapes[1][1] * in_shapes[1][2]
    if name == "FULLY_CONNECTED":  # weights [out, in]
        return out * in_shapes[1][-1]
    if name == "BATCH_MATMUL":
        return out * in_shapes[0][-1]
    if name == "TRANSPOSE_CONV":  # weights [cout, kh, kw, cin]; every input pixel meets the whole kernel
        return int(np.prod(in_shapes[2])) * int(np.prod(in_shapes[1][:3]))
    return 0


def io_details(model) -> dict:
    """{'inputs': [...], 'outputs': [...]}: name (signature key), dtype, shape, scale and zero point if quantized."""
    sg = model.subgraphs[0]
    sig = model.signatureDefs[0] if model.signatureDefs else None

    def describe(index: int, entries) -> dict:
        t = sg.tensors[index]
        name = next((e.name.decode() for e in (entries or []) if e.tensorIndex == index), t.name.decode())
        q = t.quantization
        quant = ({"scale": float(q.scale[0]), "zero_point": int(q.zeroPoint[0])}
                 if q is not None and q.scale is not None and len(q.scale) == 1 else None)
        return {"name": name, "dtype": dtype_name(t), "shape": [int(d) for d in t.shape], "quantization": quant}

    return {"inputs": [describe(i, sig.inputs if sig else None) for i in sg.inputs],
            "outputs": [describe(i, sig.outputs if sig else None) for i in sg.outputs]}


def _opcode(model, builtin: int, version: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and code.version == version:
            return i
    code = _schema().OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _new_tensor(model, like, type_: int, name: str, scale: float | None = None, zero_point: int | None = None) -> int:
    s = _schema()
    sg = model.subgraphs[0]
    t = s.TensorT()
    t.shape, t.shapeSignature, t.type, t.name = like.shape, like.shapeSignature, type_, name.encode()
    buf = s.BufferT()
    model.buffers.append(buf)
    t.buffer = len(model.buffers) - 1
    if scale is not None:
        q = s.QuantizationParametersT()
        q.scale, q.zeroPoint = [scale], [zero_point]
        t.quantization = q
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _quantize_op(model, src: int, dst: int):
    s = _schema()
    op = s.OperatorT()
    op.opcodeIndex = _opcode(model, s.BuiltinOperator.QUANTIZE, 2)  # version 2: float -> int8
    op.inputs, op.outputs = [src], [dst]
    op.builtinOptionsType = s.BuiltinOptions.QuantizeOptions
    op.builtinOptions = s.QuantizeOptionsT()
    return op


def float_inputs(model) -> None:
    """Give every int8 input a float32 twin fed through a QUANTIZE op (litert-torch folds the input quantize
    into the interface; callers of a float-I/O model feed floats)."""
    s = _schema()
    sg = model.subgraphs[0]
    for pos, index in enumerate(list(sg.inputs)):
        old = sg.tensors[index]
        if old.type != s.TensorType.INT8:
            continue
        new = _new_tensor(model, old, s.TensorType.FLOAT32, old.name.decode())
        old.name = old.name + b":quantized"
        sg.operators.insert(0, _quantize_op(model, new, index))
        sg.inputs[pos] = new
        _retarget_signature(model, "inputs", index, new)


def int8_outputs(model, ranges: list[tuple[float, float]]) -> None:
    """Quantize every float output to int8 with the given (lo, hi) ranges, through a final QUANTIZE op."""
    s = _schema()
    sg = model.subgraphs[0]
    for pos, (index, (lo, hi)) in enumerate(zip(list(sg.outputs), ranges)):
        old = sg.tensors[index]
        if old.type != s.TensorType.FLOAT32:
            continue
        lo, hi = min(lo, 0.0), max(hi, 0.0, lo + 1e-6)
        scale = (hi - lo) / 255.0
        zero_point = int(np.clip(round(-128 - lo / scale), -128, 127))
        new = _new_tensor(model, old, s.TensorType.INT8, old.name.decode(), scale, zero_point)
        old.name = old.name + b":float"
        sg.operators.append(_quantize_op(model, index, new))
        sg.outputs[pos] = new
        _retarget_signature(model, "outputs", index, new)


def _retarget_signature(model, side: str, old: int, new: int) -> None:
    for sig in model.signatureDefs or []:
        for entry in getattr(sig, side) or []:
            if entry.tensorIndex == old:
                entry.tensorIndex = new
