"""Load a torch.export `.pt2` without running anything the file brings with it.

`torch.export.load` trusts its file: it unpickles sample inputs (falling back to weights_only=False),
pickled weights and constants, loads AOTInductor shared libraries, `sympify`s (evals) shape expressions,
execs guard code and resolves any dotted name under `torch`/`operator` as a graph call (e.g.
`torch.serialization.os.system`). Here every entry, payload config and program field is checked
against what a plain exported program holds before torch's own deserializer sees it; sample inputs
are never read, and the graph may call only ATen/prims operators. Anything else is refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgekit.errors import BadInputError, first_line
from edgekit.quiet import quiet

MODEL = "model"
FIX = "fix: re-export with torch.export.save from a plain nn.Module (tensor weights and ATen operators only)"

# archive entries (relative to its root folder) that a plain exported program has; sample inputs are never read
ALLOWED_ENTRIES = re.compile(r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
                             r"|models/model\.json|data/weights/model_weights_config\.json|data/weights/weight_\d+"
                             r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+"
                             r"|data/sample_inputs/model\.pt|extra/[\w.-]+)\Z")
PAYLOAD_NAME = {"weights": re.compile(r"weight_\d+\Z"), "constants": re.compile(r"tensor_\d+\Z")}

# what a graph node may call: operators, never arbitrary callables reached through dotted names
OP_TARGET = re.compile(r"torch\.ops\.(aten|prims)\.(?!__)\w+\.(?!__)\w+\Z"
                       r"|_operator\.(getitem|add|sub|mul|floordiv|truediv|mod|neg|pow|eq|ne|lt|le|gt|ge)\Z"
                       r"|torch\.sym_(int|float|max|min|not|ite|sqrt)\Z")
PLAIN = re.compile(r"[\w.]*\Z", re.ASCII)  # names, FQNs, enums: no quotes, brackets or spaces to smuggle code in
FREE_TEXT_KEYS = {"nn_module_stack", "torch_fn", "source_fn_stack", "in_spec", "out_spec", "torch_version", "custom",
                  "as_string", "as_strings"}  # data torch parses or stores, never evaluates
DROPPED_KEYS = {"stack_trace"}  # becomes comments in generated Python code: not worth the risk
CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")

# shape expressions are passed to sympy.sympify (an eval): only these names, symbols, numbers and arithmetic
SYMPY_NAMES = {"Symbol", "Integer", "positive", "integer", "True", "False", "oo", "Max", "Min", "Eq", "Ne", "Lt", "Le",
               "Gt", "Ge", "And", "Or", "Not", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv",
               "CeilToInt", "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv",
               "IntTrueDiv", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity"}
SYMBOL = re.compile(r"[a-z]+\d+\Z")
SYMPY_TOKEN = re.compile(r"\s+|\d+(?:\.\d+)?|'[a-z]+\d+'|[A-Za-z_]\w*|\*\*|//|[-+*/%(),=<>]")


class Refused(BadInputError):
    """The archive holds something that would run code or needs unpickling."""


def load_exported_program(path: str | Path):
    """The ExportedProgram in `path`, loaded without unpickling or evaluating anything from the file."""
    torch_serde = _torch_serde()  # outside the try: if a torch upgrade moves these, that is a bug, not a bad file
    path = Path(path)
    try:
        with quiet():  # torch logs warnings (and tracebacks) while deserializing
            with torch_serde.PT2ArchiveReader(str(path)) as reader:
                _check_entries(path, reader.get_file_names())
                for kind in ("weights", "constants"):
                    _check_payloads(path, kind, json.loads(reader.read_string(f"data/{kind}/{MODEL}_{kind}_config.json")))
                program = json.loads(reader.read_string(f"models/{MODEL}.json"))
                _check_program(path, program)
                ep = _deserialize(torch_serde, reader, program)
            _check_graph_calls(path, ep.graph_module)
            ep._guards_code = []  # guard code is exec'd by .module(); shapes are checked by edgekit itself
            return ep
    except Refused:
        raise
    except Exception as exc:  # a corrupt archive raises anything from zip, json, torch or the schema
        first = first_line(exc, 200).split(". ")[0]  # torch appends paragraphs of advice
        raise BadInputError(f"{path}: not a loadable torch.export program ({first}); "
                            "fix: re-save it with torch.export.save") from None


def _torch_serde():
    """The private pieces of torch 2.13's .pt2 loader this module drives (imported when needed: principle 3)."""
    from types import SimpleNamespace

    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass
    from torch.export.pt2_archive._package import PT2ArchiveReader, _load_constants, _load_state_dict

    return SimpleNamespace(schema=schema, Deserializer=ExportedProgramDeserializer, to_dataclass=_dict_to_dataclass,
                           PT2ArchiveReader=PT2ArchiveReader, load_constants=_load_constants, load_state_dict=_load_state_dict)


def _deserialize(torch_serde, reader, program: dict):
    """torch's own deserializer on checked inputs: tensors from raw records (no payload uses pickle, checked), and no
    sample inputs (None: never read)."""
    serialized = torch_serde.to_dataclass(torch_serde.schema.ExportedProgram, program)
    state_dict = torch_serde.load_state_dict(reader, MODEL)
    constants = torch_serde.load_constants(reader, MODEL)
    return torch_serde.Deserializer().deserialize(serialized, state_dict, constants, None)


def _check_entries(path: Path, names: list[str]) -> None:
    odd = sorted(n for n in names if not ALLOWED_ENTRIES.match(n))
    if odd:
        raise Refused(f"{path}: archive entry {odd[0]!r} is not part of a plain exported program (compiled code, "
                      f"pickled data or a second model), and edgekit runs no code from a model file; {FIX}")
    if f"models/{MODEL}.json" not in names:
        raise BadInputError(f"{path}: no models/{MODEL}.json in the archive; fix: re-save it with torch.export.save")


def _check_payloads(path: Path, kind: str, config: dict) -> None:
    """Weights and constants must be raw tensor records: a pickled one would be unpickled unsafely by torch."""
    for fqn, meta in config.get("config", {}).items():
        if meta.get("use_pickle") or not PAYLOAD_NAME[kind].match(str(meta.get("path_name"))) or not meta.get("tensor_meta"):
            raise Refused(f"{path}: {kind[:-1]} {fqn!r} is stored pickled or as a Python object, which edgekit never "
                          f"unpickles; {FIX}")


def _check_program(path: Path, node, key: str = "") -> None:
    """Walk the program JSON: every string must be data that torch will not evaluate."""
    if isinstance(node, dict):
        for k in DROPPED_KEYS & node.keys():
            del node[k]
        for k, v in node.items():
            _require(path, PLAIN.match(k) is not None, "key", k)
            _check_program(path, v, k)
    elif isinstance(node, list):
        for v in node:
            _check_program(path, v, key)
    elif isinstance(node, str):
        if key == "target":
            _require(path, OP_TARGET.match(node) is not None, "graph call", node)
        elif key == "expr_str":
            _require(path, _plain_shape_expression(node), "shape expression", node)
        elif key in FREE_TEXT_KEYS:
            _require(path, CONTROL.search(node) is None, key, node)
        else:
            _require(path, PLAIN.match(node) is not None, key, node)


def _require(path: Path, ok: bool, what: str, value: str) -> None:
    if not ok:
        raise Refused(f"{path}: {what} {value[:80]!r} is not something a plain exported program holds, and edgekit "
                      f"runs no code from a model file; {FIX}")


def _plain_shape_expression(text: str) -> bool:
    tokens = SYMPY_TOKEN.findall(text)
    if "".join(tokens) != text or len(text) > 400 or tokens.count("**") > 1 or any(t.isdigit() and len(t) > 12 for t in tokens):
        return False  # also keeps sympy from evaluating huge powers
    names = [t for t in tokens if t[:1].isalpha() or t[:1] == "_"]
    return all(t in SYMPY_NAMES or SYMBOL.match(t) for t in names)


def _check_graph_calls(path: Path, graph_module) -> None:
    """After deserializing, every call must be an ATen/prims operator or plain arithmetic (the names were checked;
    this checks what they resolved to, before anything runs)."""
    import operator

    import torch

    arithmetic = {getattr(operator, n) for n in ("getitem", "add", "sub", "mul", "floordiv", "truediv", "mod", "neg",
                                                 "pow", "eq", "ne", "lt", "le", "gt", "ge")}
    arithmetic |= {getattr(torch, f"sym_{n}") for n in ("int", "float", "max", "min", "not", "ite", "sqrt")}
    for module in graph_module.modules():
        graph = getattr(module, "graph", None)
        for node in graph.nodes if graph is not None else ():
            if node.op in ("call_module", "call_method"):
                _require(path, False, f"graph {node.op}", str(node.target))
            if node.op != "call_function":
                continue
            target = node.target
            is_op = isinstance(target, torch._ops.OpOverload) and target.namespace in ("aten", "prims")
            _require(path, is_op or target in arithmetic, "graph call", str(target))
