"""A reference interpreter for the Core ML ML programs edgekit emits, in numpy (convolutions in torch), so Core ML
artifacts are verified on Linux, where Core ML itself cannot predict.

The package's MIL program and weights are read with coremltools' own MIL-proto reader; execution is
edgekit's. Precision: tensors keep their declared dtype (float16 programs store every op output as
float16); each op computes from its inputs in float32 (products and sums accumulate in float32) and its
output is rounded to the declared dtype. Core ML on a device may accumulate FP16 in FP16 on the GPU or
Neural Engine: this interpreter is a reference, not a bit-exact device model.

Unknown ops, and attribute values an op here does not implement (dilations other than 1, ceil_mode,
interleaved concat, ...), raise UnsupportedMilError naming the op: nothing is silently approximated.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from edgekit._optional import require
from edgekit.errors import BadInputError


class UnsupportedMilError(BadInputError):
    pass


_NP = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_,
       "int16": np.int16, "uint16": np.uint16, "fp64": np.float64, "int64": np.int64}
_HALF_AND_SINGLE = {np.dtype(np.float16), np.dtype(np.float32)}


def _cast(value, dtype) -> np.ndarray:
    """A new array of `value` in `dtype`. Between float32 and float16 through torch: the same bits as numpy's astype
    (IEEE round to nearest even), 10-25x faster (numpy's conversion is not vectorised: rounding each op's output of
    GazeResNet18's FP16 program took a sixth of its interpretation time)."""
    value = np.asarray(value)
    if value.dtype != dtype and {value.dtype, np.dtype(dtype)} == _HALF_AND_SINGLE:
        if not (value.flags.c_contiguous and value.flags.writeable):  # torch.from_numpy's conditions
            value = value.copy()
        return torch.from_numpy(value).to(torch.float16 if dtype == np.float16 else torch.float32).numpy()
    return value.astype(dtype)


def load_program(package: Path):
    """(main function, weights dir) of an .mlpackage, via coremltools' MIL-proto loader (no Core ML runtime)."""
    ct = require("coremltools", "reading Core ML packages")
    from coremltools.converters.mil.frontend.milproto.load import load as load_milproto

    model = ct.models.MLModel(str(package), skip_model_load=True)
    spec = model.get_spec()
    if not spec.HasField("mlProgram"):
        raise UnsupportedMilError(f"{package}: not an ML program (neural-network Core ML models are not interpreted)")
    program = load_milproto(spec, spec.specificationVersion, file_weights_dir=model.weights_dir)
    return program.functions["main"], spec


def dtype_name(var) -> str:
    from coremltools.converters.mil.mil import types

    dt = var.dtype
    if types.is_tensor(var.sym_type):
        dt = var.sym_type.get_primitive()
    return types.builtin_to_string(dt)


def _pads(op, x_spatial, kernel, strides, dilations=None) -> list[tuple[int, int]]:
    pad_type = op.pad_type.val if hasattr(op, "pad_type") and op.pad_type is not None else "valid"
    n = len(kernel)
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        p = [int(v) for v in op.pad.val]
        return [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    if pad_type in ("same", "same_lower"):
        out = []
        for i in range(n):
            eff = (kernel[i] - 1) * (dilations[i] if dilations is not None else 1) + 1
            total = max((int(np.ceil(x_spatial[i] / strides[i])) - 1) * strides[i] + eff - x_spatial[i], 0)
            lo = total // 2 if pad_type == "same" else total - total // 2
            out.append((lo, total - lo))
        return out
    raise UnsupportedMilError(f"{op.op_type} {op.name}: pad_type {pad_type!r} is not implemented")


def _max_of_windows(x: np.ndarray, kernel, strides) -> np.ndarray:
    """The max of each window of a padded (N, C, H, W) tensor, as a running maximum over the kh * kw strided views of
    it: the same values as a max over the window view (_windows), 16x faster (that took 3.2 of GazeResNet18's 23 ms
    per sample)."""
    (kh, kw), (sh, sw) = kernel, strides
    rows, cols = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    out = x[:, :, :sh * rows:sh, :sw * cols:sw].copy()
    for i in range(kh):
        for j in range(kw):
            np.maximum(out, x[:, :, i:i + sh * rows:sh, j:j + sw * cols:sw], out=out)
    return out


def _windows(x: np.ndarray, kernel, strides) -> np.ndarray:
    """(N, C, H', W', kh, kw) sliding windows of a padded (N, C, H, W) tensor."""
    win = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=(2, 3))
    return win[:, :, ::strides[0], ::strides[1]]


class MilInterpreter:
    _float32: dict = {}  # id(constant array) -> (array, float32 copy); __init__ gives each interpreter its own

    def __init__(self, package: Path):
        self.package = Path(package)
        self.function, self.spec = load_program(self.package)
        self.ops = list(self.function.operations)
        for op in self.ops:
            if op.op_type != "const" and not hasattr(self, f"_op_{op.op_type}"):
                raise UnsupportedMilError(f"op {op.op_type} ({op.name}) is not implemented by edgekit's MIL interpreter; "
                                          "fix: extend edgekit/backends/coreml/mil_interpreter.py or use a target without it")
        self.input_names = list(self.function.inputs)
        self.output_names = [v.name for v in self.function.outputs]
        self.macs = 0
        # constants converted to float32 once, not on every run: FP16 weights converted per call were a quarter of
        # GazeResNet18's interpretation time (read by _f through the identity of the constant's array)
        self._float32 = {}
        for op in self.ops:
            for var in op.outputs if op.op_type == "const" else ():
                if isinstance(var.val, np.ndarray) and var.val.dtype.kind == "f":
                    self._keep_float32(var.val)
        # a constexpr op's output (compressed weights decompressed) depends on constants only: computed at the first
        # run and kept; per run it cost GazeResNet18's INT8 program 3x, its palettized one 12x the time of the FP16 one
        self._constexpr: dict[str, np.ndarray] = {}
        # conv weights as channels_last torch tensors, per op while its weight array is the same one (constants):
        # oneDNN's channels_last convolutions ran GazeResNet18's convs at batch 1 in 11 ms against 26 ms in NCHW
        self._conv_weights: dict[str, tuple[np.ndarray, torch.Tensor]] = {}
        # read from coremltools' Var objects once: its .val and dtype properties cost GazeResNet18's FP16 program
        # 2-3 ms per run (a tenth of it) when read at every op of every run
        self._constants: dict[str, np.ndarray] = {}
        self._output_dtypes = [[_NP.get(dtype_name(var), np.float32) for var in op.outputs] for op in self.ops]
        self._mac_rows: dict[str, tuple[str, int]] = {}

    def _keep_float32(self, value: np.ndarray) -> None:
        self._float32[id(value)] = (value, np.asarray(value, dtype=np.float32))

    # --- execution ---------------------------------------------------------------------------------
    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        env: dict[str, np.ndarray] = dict(self._constexpr)
        feed = dict(zip(self.input_names, inputs.values())) if set(inputs) != set(self.input_names) else inputs
        for name, var in self.function.inputs.items():
            env[name] = _cast(feed[name], _NP[dtype_name(var)])
        self.macs = 0
        self.layers: list[dict] = []
        for op, dtypes in zip(self.ops, self._output_dtypes):
            if op.op_type == "const" or op.outputs[0].name in self._constexpr:
                continue
            args = {k: self._value(v, env) for k, v in op.inputs.items()}
            result = getattr(self, f"_op_{op.op_type}")(op, **args)
            results = result if isinstance(result, tuple) else (result,)
            for var, value, dtype in zip(op.outputs, results, dtypes):
                env[var.name] = _cast(value, dtype)
                if op.op_type.startswith("constexpr_"):
                    self._constexpr[var.name] = env[var.name]
                    self._keep_float32(env[var.name])
        return np.asarray(env[self.output_names[0]], dtype=np.float64)

    def _value(self, var, env):
        if isinstance(var, (list, tuple)):
            return [self._value(v, env) for v in var]
        if var.name in env:
            return env[var.name]
        if var.name not in self._constants:
            if var.val is None:
                raise UnsupportedMilError(f"variable {var.name} has no value (op order or an unsupported construct)")
            self._constants[var.name] = var.val  # the same array each time (_f finds its float32 copy by identity)
        return self._constants[var.name]

    def describe(self) -> str:
        return ("edgekit MIL reference interpreter (numpy, convolutions in torch): declared dtypes kept (FP16 outputs rounded to FP16), "
                "FP32 accumulation; Core ML itself predicts only on macOS")

    def _count(self, op, macs: int, x: np.ndarray, out: np.ndarray) -> None:
        """One energy-count row per MAC op: the precision it computes in and the bytes its weights are stored in."""
        self.macs += macs
        kept = self._mac_rows.get(op.name)
        if kept is None:  # what depends on the op alone, read from coremltools' Var objects once (slow per run)
            kept = self._mac_rows[op.name] = self._mac_row(op)
        precision, weight_bytes = kept
        self.layers.append({"layer": op.name, "op": op.op_type, "precision": precision, "macs": macs,
                            "weight_bytes": weight_bytes, "act_in_elems": int(x.size), "act_out_elems": int(out.size),
                            "act_bytes_per_elem": 2 if precision == "fp16" else (1 if precision == "int8" else 4)})

    def _mac_row(self, op) -> tuple[str, int]:
        """(the precision MAC op `op` computes in, the bytes its weights are stored in)."""
        producer = getattr(op.inputs["x"], "op", None)
        declared = dtype_name(op.outputs[0])
        precision = "int8" if producer is not None and producer.op_type == "dequantize" else (
            "fp16" if declared == "fp16" else "fp32")
        weight = op.inputs.get("weight")
        stored = self._stored_dtypes().get(weight.name) if weight is not None else None
        per_elem = {"int8": 1, "uint8": 1, "fp16": 2, "fp32": 4}.get((stored or "").split("-")[-1], 4)
        if stored and stored.startswith("lut-"):
            per_elem = 0.5  # 4-bit palette indices (the palettize4 recipe)
        elements = int(np.prod(weight.shape)) if weight is not None and weight.shape else 0
        return precision, int(elements * per_elem)

    def _stored_dtypes(self) -> dict[str, str]:
        if not hasattr(self, "_stored"):
            self._stored = {w["name"]: w["dtype"] for w in self.weight_precisions()}
        return self._stored

    def op_histogram(self) -> dict[str, int]:
        return dict(Counter(op.op_type for op in self.ops if op.op_type != "const"))

    def weight_precisions(self) -> list[dict]:
        """Every constant tensor with more than 16 elements: name, dtype, elements (the stored weights)."""
        rows = []
        for op in self.ops:
            for var in op.outputs:
                if op.op_type == "const" or op.op_type.startswith("constexpr_"):
                    val = var.val if op.op_type == "const" else None
                    size = int(np.prod(var.shape)) if var.shape else 1
                    if size > 16:
                        stored = dtype_name(op.inputs["quantized_data"]) if "quantized_data" in op.inputs else (
                            "lut-" + dtype_name(op.inputs["lut"]) if "lut" in op.inputs else
                            "sparse-" + dtype_name(op.inputs["nonzero_data"]) if "nonzero_data" in op.inputs else dtype_name(var))
                        rows.append({"name": var.name, "op": op.op_type, "dtype": stored, "elements": size,
                                     "value_dtype": str(val.dtype) if val is not None else dtype_name(var)})
        consumed = {v.name for op in self.ops if op.op_type.startswith("constexpr_") for v in op.inputs.values()
                    if hasattr(v, "name")}
        return [r for r in rows if r["name"] not in consumed]

    # --- ops (keyword names follow the MIL op definitions) -----------------------------------------
    def _f(self, x):
        kept = self._float32.get(id(x))
        if kept is not None and kept[0] is x:
            return kept[1]
        x = np.asarray(x)
        return x if x.dtype == np.float32 else _cast(x, np.float32)

    def _op_cast(self, op, x, dtype):
        return _cast(x, _NP[str(dtype)])

    def _op_relu(self, op, x):
        return np.maximum(self._f(x), 0)

    def _op_sigmoid(self, op, x):
        return 1 / (1 + np.exp(-self._f(x)))

    def _op_tanh(self, op, x):
        return np.tanh(self._f(x))

    def _op_add(self, op, x, y):
        return self._f(x) + self._f(y)

    def _op_sub(self, op, x, y):
        return self._f(x) - self._f(y)

    def _op_mul(self, op, x, y):
        return self._f(x) * self._f(y)

    def _op_real_div(self, op, x, y):
        return self._f(x) / self._f(y)

    def _op_maximum(self, op, x, y):
        return np.maximum(self._f(x), self._f(y))

    def _op_minimum(self, op, x, y):
        return np.minimum(self._f(x), self._f(y))

    def _op_reshape(self, op, x, shape):
        return np.reshape(x, [int(s) for s in shape])

    def _op_transpose(self, op, x, perm):
        return np.transpose(x, [int(p) for p in perm])

    def _op_squeeze(self, op, x, axes=None):
        return np.squeeze(x, axis=tuple(int(a) for a in axes) if axes is not None else None)

    def _op_expand_dims(self, op, x, axes):
        for a in sorted(int(a) for a in axes):
            x = np.expand_dims(x, a)
        return x

    def _op_tile(self, op, x, reps):
        return np.tile(x, [int(r) for r in reps])

    def _op_concat(self, op, values, axis, interleave=False):
        if interleave:
            raise UnsupportedMilError(f"concat {op.name}: interleave=True is not implemented")
        return np.concatenate(values, axis=int(axis))

    def _op_stack(self, op, values, axis):
        return np.stack(values, axis=int(axis))

    def _op_split(self, op, x, axis, num_splits=None, split_sizes=None):
        if split_sizes is not None:
            edges = np.cumsum([int(v) for v in split_sizes])[:-1]
            return tuple(np.split(x, edges, axis=int(axis)))
        return tuple(np.split(x, int(num_splits), axis=int(axis)))

    def _op_slice_by_index(self, op, x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
        x = np.asarray(x)
        index = []
        for d in range(x.ndim):
            b = None if begin_mask is not None and begin_mask[d] else int(begin[d])
            e = None if end_mask is not None and end_mask[d] else int(end[d])
            step = int(stride[d]) if stride is not None else 1
            if squeeze_mask is not None and squeeze_mask[d]:
                index.append(int(begin[d]))
            else:
                index.append(slice(b, e, step))
        return x[tuple(index)]

    def _reduce(self, x, axes, keep_dims, fn):
        axes = tuple(int(a) for a in axes) if axes is not None else None
        return fn(self._f(x), axis=axes, keepdims=bool(keep_dims))

    def _op_reduce_mean(self, op, x, axes=None, keep_dims=False):
        return self._reduce(x, axes, keep_dims, np.mean)

    def _op_reduce_sum(self, op, x, axes=None, keep_dims=False):
        return self._reduce(x, axes, keep_dims, np.sum)

    def _op_reduce_l2_norm(self, op, x, axes=None, keep_dims=False):
        return self._reduce(x, axes, keep_dims, lambda v, axis, keepdims: np.sqrt(np.sum(v * v, axis=axis, keepdims=keepdims)))

    def _op_linear(self, op, x, weight, bias=None):
        x, w = self._f(x), self._f(weight)
        out = x @ w.T
        self._count(op, int(np.prod(x.shape[:-1])) * w.shape[0] * w.shape[1], x, out)
        return out + self._f(bias) if bias is not None else out

    def _op_matmul(self, op, x, y, transpose_x=False, transpose_y=False):
        x, y = self._f(x), self._f(y)
        if transpose_x:
            x = np.swapaxes(x, -1, -2)
        if transpose_y:
            y = np.swapaxes(y, -1, -2)
        out = x @ y
        self._count(op, int(np.prod(out.shape)) * x.shape[-1], x, out)
        return out

    def _op_conv(self, op, x, weight, strides=None, pad_type=None, pad=None, dilations=None, groups=1, bias=None):
        x, w = self._f(x), self._f(weight)
        if x.ndim != 4:
            raise UnsupportedMilError(f"conv {op.name}: only 2-D convolution is implemented (input rank {x.ndim})")
        kernel = w.shape[2:]
        strides = [int(s) for s in (strides if strides is not None else [1, 1])]
        dil = [int(d) for d in (dilations if dilations is not None else [1, 1])]
        if dil != [1, 1]:
            raise UnsupportedMilError(f"conv {op.name}: dilations {dil} are not implemented")
        (pt, pb), (pl, pr) = _pads(op, x.shape[2:], kernel, strides, dil)
        x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        g = int(groups)
        cin_g = x.shape[1] // g
        # torch's float32 convolution (the padding already applied: MIL's may be asymmetric): 3x faster than an im2col
        # product in numpy on GazeResNet18, and the same sum up to float32 rounding
        out = F.conv2d(torch.from_numpy(np.ascontiguousarray(x)).contiguous(memory_format=torch.channels_last),
                       self._conv_weight(op, w), stride=strides, groups=g).numpy()
        self._count(op, int(np.prod(out.shape)) * cin_g * int(np.prod(kernel)), x, out)
        return out + self._f(bias).reshape(1, -1, 1, 1) if bias is not None else out

    def _conv_weight(self, op, w: np.ndarray) -> torch.Tensor:
        kept = self._conv_weights.get(op.name)
        if kept is None or kept[0] is not w:
            kept = (w, torch.from_numpy(np.ascontiguousarray(w)).contiguous(memory_format=torch.channels_last))
            self._conv_weights[op.name] = kept
        return kept[1]

    def _pool(self, op, x, kernel_sizes, strides, pad, ceil_mode, reduce, pad_value):
        if bool(ceil_mode):
            raise UnsupportedMilError(f"{op.op_type} {op.name}: ceil_mode=True is not implemented")
        x = self._f(x)
        kernel, strides = [int(k) for k in kernel_sizes], [int(s) for s in strides]
        (pt, pb), (pl, pr) = _pads(op, x.shape[2:], kernel, strides)
        padded = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
        return reduce(padded, (pt, pb, pl, pr), kernel, strides)

    def _op_max_pool(self, op, x, kernel_sizes, strides, pad_type=None, pad=None, ceil_mode=False):
        return self._pool(op, x, kernel_sizes, strides, pad, ceil_mode, lambda padded, pads, kernel, strides:
                          _max_of_windows(padded, kernel, strides), -np.inf)

    def _op_avg_pool(self, op, x, kernel_sizes, strides, pad_type=None, pad=None, ceil_mode=False,
                     exclude_padding_from_average=False):
        def average(padded, pads, kernel, strides):
            win, shape = _windows(padded, kernel, strides), padded.shape
            if not exclude_padding_from_average:
                return win.mean(axis=(-2, -1))
            ones = np.pad(np.ones((1, 1, shape[2] - pads[0] - pads[1], shape[3] - pads[2] - pads[3]), np.float32),
                          ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
            counts = _windows(ones, kernel, strides).sum(axis=(-2, -1))
            return win.sum(axis=(-2, -1)) / counts
        return self._pool(op, x, kernel_sizes, strides, pad, ceil_mode, average, 0.0)

    @staticmethod
    def _per_axis(v, ndim: int, axis):
        v = np.asarray(v, np.float32)
        if v.ndim == 0 or axis is None:
            return v
        shape = [1] * ndim
        shape[int(axis)] = -1
        return v.reshape(shape)

    def _op_quantize(self, op, input, scale, output_dtype, zero_point=None, axis=None):
        x = self._f(input)
        info = np.iinfo(_NP[str(output_dtype)])
        zp = self._per_axis(zero_point if zero_point is not None else 0, x.ndim, axis)
        # round half to even, as torch's quantize_per_tensor (the source of these ops) does
        return np.clip(np.round(x / self._per_axis(scale, x.ndim, axis)) + zp, info.min, info.max)

    def _op_dequantize(self, op, input, scale, zero_point=None, axis=None):
        q = np.asarray(input, np.float32)
        zp = self._per_axis(zero_point if zero_point is not None else 0, q.ndim, axis)
        return (q - zp) * self._per_axis(scale, q.ndim, axis)

    def _op_constexpr_affine_dequantize(self, op, quantized_data, zero_point, scale, axis):
        q = np.asarray(quantized_data, np.float32)
        shape = [1] * q.ndim
        shape[int(axis)] = -1
        zp = np.asarray(zero_point, np.float32)
        sc = np.asarray(scale, np.float32)
        zp = zp.reshape(shape) if zp.ndim else zp
        sc = sc.reshape(shape) if sc.ndim else sc
        return (q - zp) * sc

    def _op_constexpr_sparse_to_dense(self, op, nonzero_data, mask, shape):
        n = int(np.prod(shape))
        bits = np.unpackbits(np.asarray(mask, np.uint8), bitorder="little")[:n]
        dense = np.zeros(n, np.float32)
        dense[bits != 0] = np.asarray(nonzero_data, np.float32)
        return dense.reshape([int(v) for v in shape])

    def _op_constexpr_lut_to_dense(self, op, lut, indices, shape):
        lut = np.asarray(lut)
        if lut.ndim != 1:
            raise UnsupportedMilError(f"constexpr_lut_to_dense {op.name}: only a single (per-tensor) LUT is implemented")
        n = int(np.prod(shape))
        bits = int(np.log2(len(lut)))
        raw = np.unpackbits(np.asarray(indices, np.uint8), bitorder="little")[: n * bits].reshape(n, bits)
        idx = (raw * (1 << np.arange(bits))).sum(axis=1)
        return lut[idx].reshape([int(s) for s in shape])

    # --- activations, normalisation, attention and spatial-transformer ops ------------------------
    def _op_relu6(self, op, x):
        return np.clip(self._f(x), 0, 6)

    def _op_silu(self, op, x):
        x = self._f(x)
        return x / (1 + np.exp(-x))

    def _op_clip(self, op, x, alpha, beta):
        return np.minimum(np.maximum(self._f(x), np.float32(alpha)), np.float32(beta))

    def _op_thresholded_relu(self, op, x, alpha=1.0):
        x = self._f(x)
        return np.where(x >= np.float32(alpha), x, np.float32(0))  # MIL: x if x >= alpha, else 0

    def _op_sigmoid_hard(self, op, x, alpha=0.2, beta=0.5):
        return np.clip(np.float32(alpha) * self._f(x) + np.float32(beta), 0, 1)

    def _op_gelu(self, op, x, mode="EXACT"):
        x = self._f(x)
        mode = str(mode)
        if mode == "TANH_APPROXIMATION":
            return 0.5 * x * (1 + np.tanh(np.float32(np.sqrt(2 / np.pi)) * (x + np.float32(0.044715) * x ** 3)))
        if mode == "SIGMOID_APPROXIMATION":
            return x / (1 + np.exp(np.float32(-1.702) * x))
        if mode != "EXACT":
            raise UnsupportedMilError(f"gelu {op.name}: mode {mode!r} is not implemented")
        return (0.5 * x * (1 + _erf(x / np.float32(np.sqrt(2))))).astype(np.float32)

    def _op_softmax(self, op, x, axis=-1):
        x = self._f(x)
        e = np.exp(x - x.max(axis=int(axis), keepdims=True))
        return e / e.sum(axis=int(axis), keepdims=True)

    def _op_reduce_max(self, op, x, axes=None, keep_dims=False):
        return self._reduce(x, axes, keep_dims, np.max)

    def _op_batch_norm(self, op, x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
        x = self._f(x)
        if x.ndim not in (3, 4, 5):
            raise UnsupportedMilError(f"batch_norm {op.name}: input rank {x.ndim} (MIL allows 3 to 5)")
        shape = [1, -1] + [1] * (x.ndim - 2)  # channel axis 1
        out = (x - self._f(mean).reshape(shape)) / np.sqrt(self._f(variance).reshape(shape) + np.float32(epsilon))
        if gamma is not None:
            out = out * self._f(gamma).reshape(shape)
        return out + self._f(beta).reshape(shape) if beta is not None else out

    def _op_layer_norm(self, op, x, axes=None, gamma=None, beta=None, epsilon=1e-5):
        x = self._f(x)
        axes = sorted(int(a) % x.ndim for a in (axes if axes is not None else range(x.ndim)))
        norm_shape = [x.shape[d] if d in axes else 1 for d in range(x.ndim)]
        centred = x - x.mean(axis=tuple(axes), keepdims=True)
        out = centred / np.sqrt((centred * centred).mean(axis=tuple(axes), keepdims=True) + np.float32(epsilon))
        if gamma is not None:
            out = out * self._f(gamma).reshape(norm_shape)
        return out + self._f(beta).reshape(norm_shape) if beta is not None else out

    _LSTM_ACTIVATIONS = {"sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh, "relu": lambda v: np.maximum(v, 0),
                         "linear": lambda v: v}

    def _op_lstm(self, op, x, initial_h, initial_c, weight_ih, weight_hh, bias=None, peephole=None, weight_ih_back=None,
                 weight_hh_back=None, bias_back=None, peephole_back=None, direction="forward", output_sequence=False,
                 recurrent_activation="sigmoid", cell_activation="tanh", activation="tanh", clip=None):
        direction = str(direction)
        acts = []
        for a in (recurrent_activation, cell_activation, activation):
            if str(a) not in self._LSTM_ACTIVATIONS:
                raise UnsupportedMilError(f"lstm {op.name}: activation {str(a)!r} is not implemented (its alpha/beta are "
                                          "not part of the op); fix: use sigmoid/tanh/relu/linear")
            acts.append(self._LSTM_ACTIVATIONS[str(a)])
        if clip is not None:
            raise UnsupportedMilError(f"lstm {op.name}: clip is not implemented")
        if direction == "bidirectional" and not bool(output_sequence):
            raise UnsupportedMilError(f"lstm {op.name}: bidirectional with output_sequence=False is not implemented")
        x = self._f(x)  # (seq, batch, input)
        hidden = np.asarray(weight_hh).shape[1]
        h0, c0 = self._f(initial_h), self._f(initial_c)
        runs = [(weight_ih, weight_hh, bias, peephole, direction == "reverse")]
        if direction == "bidirectional":
            runs.append((weight_ih_back, weight_hh_back, bias_back, peephole_back, True))
        seqs, hs, cs = [], [], []
        for d, (w_ih, w_hh, b, peep, backward) in enumerate(runs):
            sl = slice(d * hidden, (d + 1) * hidden)
            seq, h, c = self._lstm_direction(x, h0[:, sl], c0[:, sl], w_ih, w_hh, b, peep, backward, *acts)
            seqs.append(seq), hs.append(h), cs.append(c)
            self._count(op, 4 * hidden * (x.shape[2] + hidden) * x.shape[0] * x.shape[1], x, seq)
        h, c = np.concatenate(hs, axis=-1), np.concatenate(cs, axis=-1)
        out = np.concatenate(seqs, axis=-1) if bool(output_sequence) else h[None]
        return out, h, c

    def _lstm_direction(self, x, h, c, w_ih, w_hh, b, peep, backward, rec_act, cell_act, out_act):
        """One direction of MIL's lstm: gates in i, f, o, z order; peepholes (i, f, o) on the cell state."""
        w_ih, w_hh = self._f(w_ih), self._f(w_hh)
        hidden = w_hh.shape[1]
        b = self._f(b) if b is not None else np.zeros(4 * hidden, np.float32)
        p = self._f(peep) if peep is not None else np.zeros(3 * hidden, np.float32)
        pi, pf, po = p[:hidden], p[hidden:2 * hidden], p[2 * hidden:]
        steps = range(x.shape[0] - 1, -1, -1) if backward else range(x.shape[0])
        out = np.zeros((x.shape[0], x.shape[1], hidden), np.float32)
        for t in steps:
            g = x[t] @ w_ih.T + h @ w_hh.T + b
            i = rec_act(g[:, :hidden] + pi * c)
            f = rec_act(g[:, hidden:2 * hidden] + pf * c)
            z = cell_act(g[:, 3 * hidden:])
            c = f * c + i * z
            o = rec_act(g[:, 2 * hidden:3 * hidden] + po * c)
            h = o * out_act(c)
            out[t] = h
        return out, h, c

    # grid sampling: Core ML's affine and resample, which coremltools emits for torch's affine_grid + grid_sample
    def _op_affine(self, op, x, transform_matrix, output_height, output_width, sampling_mode="bilinear",
                   padding_mode="constant", padding_value=0.0, coordinates_mode="normalized_minus_one_to_one",
                   align_corners=False):
        if str(coordinates_mode) != "normalized_minus_one_to_one":
            raise UnsupportedMilError(f"affine {op.name}: coordinates_mode {str(coordinates_mode)!r} is not implemented")
        x, m = self._f(x), self._f(transform_matrix).reshape(-1, 6)
        h, w = int(output_height), int(output_width)

        def axis(n):  # normalised output pixel positions, as torch's affine_grid places them
            return np.linspace(-1, 1, n, dtype=np.float32) if bool(align_corners) else (
                (2 * np.arange(n, dtype=np.float32) + 1) / n - 1)
        gx, gy = np.meshgrid(axis(w), axis(h))  # (h, w)
        m = np.broadcast_to(m, (x.shape[0], 6))
        cx = m[:, 0, None, None] * gx + m[:, 1, None, None] * gy + m[:, 2, None, None]
        cy = m[:, 3, None, None] * gx + m[:, 4, None, None] * gy + m[:, 5, None, None]
        return self._op_resample(op, x, np.stack([cx, cy], axis=-1), sampling_mode, padding_mode, padding_value,
                                 coordinates_mode, align_corners)

    def _op_resample(self, op, x, coordinates, sampling_mode="bilinear", padding_mode="constant", padding_value=0.0,
                     coordinates_mode="normalized_minus_one_to_one", align_corners=False):
        x, coords = self._f(x), self._f(coordinates)  # x (B, C, H, W); coords (B, H2, W2, 2) in (x, y) order
        mode, pad, cmode = str(sampling_mode), str(padding_mode), str(coordinates_mode)
        if mode not in ("bilinear", "nearest"):
            raise UnsupportedMilError(f"resample {op.name}: sampling_mode {mode!r} is not implemented")
        if pad not in ("constant", "border", "reflection", "symmetric"):
            raise UnsupportedMilError(f"resample {op.name}: padding_mode {pad!r} is not implemented")
        size = np.array([x.shape[3], x.shape[2]], np.float32)  # (W, H)
        if cmode == "unnormalized":
            pix = coords
        elif cmode == "normalized_minus_one_to_one":
            pix = (coords + 1) / 2 * (size - 1) if bool(align_corners) else ((coords + 1) * size - 1) / 2
        else:
            raise UnsupportedMilError(f"resample {op.name}: coordinates_mode {cmode!r} is not implemented; "
                                      "fix: use normalized_minus_one_to_one or unnormalized")
        px, py = pix[..., 0], pix[..., 1]
        if mode == "nearest":  # round half to even, as torch's grid_sample (the source of these ops) does
            return self._gather(x, np.rint(py).astype(np.int64), np.rint(px).astype(np.int64), pad, padding_value)
        x0, y0 = np.floor(px), np.floor(py)
        fx, fy = (px - x0)[:, None], (py - y0)[:, None]
        x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
        g = lambda yy, xx: self._gather(x, yy, xx, pad, padding_value)  # noqa: E731
        return ((g(y0, x0) * (1 - fx) + g(y0, x0 + 1) * fx) * (1 - fy)
                + (g(y0 + 1, x0) * (1 - fx) + g(y0 + 1, x0 + 1) * fx) * fy)

    @staticmethod
    def _gather(x, yy, xx, pad, padding_value):
        """x[b, :, yy[b], xx[b]] -> (B, C, H2, W2), pixels outside the image padded per MIL's padding_mode."""
        h, w = x.shape[2], x.shape[3]

        def fold(i, n):
            if pad == "border":
                return np.clip(i, 0, n - 1)
            if pad == "reflection":  # |1 2 3| -> 2 3 2 1 2 3 2 1 2 (edge not repeated)
                period = 2 * (n - 1) if n > 1 else 1
                i = np.mod(i, period)
                return np.where(i >= n, period - i, i)
            if pad == "symmetric":  # |1 2 3| -> 3 2 1 1 2 3 3 2 1 (edge repeated)
                i = np.mod(i, 2 * n)
                return np.where(i >= n, 2 * n - 1 - i, i)
            return np.clip(i, 0, n - 1)
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        b = np.arange(x.shape[0])[:, None, None]
        out = x[b, :, fold(yy, h), fold(xx, w)]  # (B, H2, W2, C)
        if pad == "constant":
            out = np.where(inside[..., None], out, np.float32(padding_value))
        return np.moveaxis(out, -1, 1)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf in float64 (numpy has none): math.erf per element, exact to double precision."""
    from math import erf

    return np.vectorize(erf, otypes=[np.float64])(np.asarray(x, np.float64))
