"""Read a ``torch.export`` file (``.pt2``) only after checking that torch will unpickle nothing in it.

``torch.export.load`` is not made for untrusted files (its own documentation warns that it uses pickle):
in torch 2.14 it calls ``torch.load(weights_only=False)`` on weights and constants marked ``use_pickle``,
``pickle.loads`` on opaque constants, TorchScript's unpickler on custom-class constants, retries the
sample inputs with ``weights_only=False`` when the safe load fails, unpickles the weights of the older
formats, and loads AOTInductor shared libraries. It also runs strings of the file as code: symbolic
shapes go through ``sympy.sympify`` (which calls ``eval``), the guards become Python source that
``module()`` executes, and a graph node may name any callable reachable from ``torch``.

:func:`load_exported` therefore reads the archive's table of contents and its JSON first and refuses
a file that holds any of these (every record must be of a kind it knows; the sample inputs must load
with ``weights_only=True``; every symbolic expression must use only sympy's constructors), drops the
guards (they only check the input's shape), and after loading accepts only graphs whose every call is
an ATen operator or an arithmetic operator on sizes.
"""

from __future__ import annotations

import io
import json
import math
import operator
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import fx, nn

from crayon_plugins.api import ConfigError

WHERE = "backbone.file"

_RECORDS = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|extra/[^/]+"
    r"|models/\w+\.json|data/weights/\w+_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/\w+_constants_config\.json|data/constants/tensor_\d+|data/sample_inputs/\w+\.pt"
)
"""The records of a ``torch.export.save`` archive that hold only JSON, text or raw tensor bytes."""

_TOKEN = re.compile(r"\s+|'[a-z]+\d*'|[A-Za-z_]\w*|\d+(?:\.\d+)?(?:e-?\d+)?|\*\*|//|[-+*/%(),=<>!]")
_SYMPY_NAMES = frozenset(
    {
        "Symbol", "Integer", "Float", "Rational", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs", "Eq", "Ne", "Lt",
        "Le", "Gt", "Ge", "And", "Or", "Not", "True", "False", "oo", "zoo", "nan", "positive", "integer",
        "nonnegative", "negative", "nonzero", "real", "finite", "evaluate", "FloorDiv", "ModularIndexing", "Where",
        "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural",
        "FloatPow", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt",
        "RoundToInt", "RoundDecimal", "ToFloat", "Identity",
    }
)  # fmt: skip
"""The names a symbolic shape may use: sympy's constructors, their options and torch's sympy functions."""
_SIZE_SYMBOL = re.compile(r"[a-z]+\d+")
_SIZE_OPS = frozenset(
    {operator.getitem, operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv, operator.mod,
     operator.pow, operator.neg, operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge,
     math.trunc, torch.sym_int, torch.sym_float, torch.sym_max, torch.sym_min, torch.sym_not}
)  # fmt: skip
"""Functions other than ATen operators an exported graph may call: indexing and arithmetic on sizes."""


def load_exported(path: Path) -> nn.Module:
    """The module of the program saved at ``path`` with ``torch.export.save``, checked as the module
    docstring says; a :class:`ConfigError` naming ``backbone.file`` for anything else."""
    _check_container(path)
    records = _records(path)
    _check_records(path, records)
    _check_payloads(path)
    program = _load(path)
    if getattr(program, "_guards_code", None):  # they only assert the input's shape; module() would run them as code
        program._guards_code = []
    module = program.module()
    _check_calls(path, module.graph)
    for name in ("train", "eval"):  # torch makes them raise; the mode stays the one the program was exported in
        module.__dict__.pop(name, None)
    return module


def _check_container(path: Path) -> None:
    """Refuse what is not a ``torch.export`` archive: no file, TorchScript, a ``torch.save`` pickle, another zip."""
    if not path.is_file():
        raise ConfigError(f"{WHERE}: {path}: no such file", WHERE)
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{WHERE}: {path} is not a torch.export file (a .pt2 written by torch.export.save)", WHERE)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    roots = {name.split("/", 1)[0] for name in names}
    inner = {name.split("/", 1)[1] for name in names if "/" in name}
    if any(name.startswith("code/") for name in inner) or "constants.pkl" in inner:
        raise ConfigError(
            f"{WHERE}: {path} is a TorchScript file; its forward is compiled, so it cannot be split at a layer. "
            "Save the model with torch.export.save(torch.export.export(model, (images,)), 'model.pt2'), "
            "or name the function that builds it in backbone.factory",
            WHERE,
        )
    if "data.pkl" in inner:
        raise ConfigError(
            f"{WHERE}: {path} was written by torch.save (a pickle), which is never loaded as a model: save the model "
            "with torch.export.save, or build it with backbone.factory and load a state dict with [original] checkpoint",
            WHERE,
        )
    if len(roots) != 1 or "/" not in names[0] or "archive_format" not in inner:
        raise ConfigError(f"{WHERE}: {path} is not a torch.export file (a .pt2 written by torch.export.save)", WHERE)


def _records(path: Path) -> list[str]:
    try:
        from torch.export.pt2_archive._package import PT2ArchiveReader
    except ImportError:
        raise ConfigError(f"{WHERE}: reading torch.export files safely needs torch.export.pt2_archive, which torch {torch.__version__} lacks; build the model with backbone.factory instead", WHERE) from None

    try:
        with PT2ArchiveReader(str(path)) as reader:
            return reader.get_file_names()
    except (RuntimeError, AssertionError) as error:
        raise ConfigError(f"{WHERE}: {path} is not a torch.export archive ({_first_line(error)})", WHERE) from None


def _check_records(path: Path, records: list[str]) -> None:
    unknown = [name for name in records if not _RECORDS.fullmatch(name)]
    if unknown:
        raise ConfigError(
            f"{WHERE}: {path} holds {', '.join(unknown[:3])}, which torch would unpickle or run as native code "
            "(only the weights, JSON and sample inputs of torch.export.save are read); re-save the program "
            "with torch.export.save, without AOTInductor packages or custom objects",
            WHERE,
        )


def _check_payloads(path: Path) -> None:
    """Refuse pickled weights or constants, sample inputs that need pickle, and symbolic shapes that are not plain sympy."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            inner = name.split("/", 1)[1]
            if inner.endswith(("_weights_config.json", "_constants_config.json")):
                for key, payload in json.loads(archive.read(name))["config"].items():
                    if payload.get("use_pickle") or not str(payload.get("path_name", "")).startswith(("weight_", "tensor_")):
                        _refuse(path, f"its tensor {key!r} is stored as a pickle")
            elif inner.startswith("data/sample_inputs/") and (data := archive.read(name)):
                try:
                    torch.load(io.BytesIO(data), weights_only=True)
                except Exception:  # noqa: BLE001 - any failure means torch would retry with weights_only=False
                    _refuse(path, "its sample inputs hold objects other than tensors")
            elif inner.startswith("models/"):
                for expression in _values(json.loads(archive.read(name)), "expr_str"):
                    if not _plain_sympy(expression):
                        _refuse(path, f"its symbolic shape {expression[:60]!r} is not a plain sympy expression (torch would eval it)")


def _refuse(path: Path, why: str) -> None:
    raise ConfigError(f"{WHERE}: {path} is refused: {why}; nothing in it was loaded", WHERE)


def _values(data: object, key: str) -> Iterator[str]:
    """Every string stored under ``key`` at any depth of ``data``."""
    if isinstance(data, dict):
        for name, value in data.items():
            if name == key and isinstance(value, str):
                yield value
            else:
                yield from _values(value, key)
    elif isinstance(data, list):
        for value in data:
            yield from _values(value, key)


def _plain_sympy(expression: str) -> bool:
    """Whether ``expression`` uses only numbers, operators, size symbols (``s77``) and sympy's
    constructors: no attribute, no subscript, no other name, so ``eval`` can reach nothing else."""
    position = 0
    for match in _TOKEN.finditer(expression):
        if match.start() != position:
            return False
        token, position = match.group(), match.end()
        if (token[0].isalpha() or token[0] == "_") and token not in _SYMPY_NAMES and not _SIZE_SYMBOL.fullmatch(token):
            return False
    return position == len(expression)


def _load(path: Path) -> torch.export.ExportedProgram:
    try:
        return torch.export.load(str(path))
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a file it cannot read
        raise ConfigError(f"{WHERE}: {path}: torch.export.load failed ({type(error).__name__}: {_first_line(error)})", WHERE) from None


def _check_calls(path: Path, graph: fx.Graph) -> None:
    for node in graph.nodes:
        if node.op == "call_module" and node.target == "_guards_fn":
            continue
        if node.op == "call_module" or (node.op == "call_function" and not _allowed(node.target)):
            _refuse(path, f"its graph calls {node.target!r}, which is not a PyTorch operator")


def _allowed(target: object) -> bool:
    if isinstance(target, torch._ops.OpOverload):
        return target.namespace == "aten"
    return target in _SIZE_OPS


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
