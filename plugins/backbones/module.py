"""Your own ``nn.Module`` as a backbone: built by a function you name, or loaded from a ``torch.export`` file.

``factory = "mypackage.models:build"`` (an importable module) or ``factory = "path/to/file.py:build"``
(a file anywhere; its folder is on ``sys.path`` while it is imported and called) names a callable that
returns the network, called with ``kwargs`` and the number of classes as ``num_classes_argument``.
``file = "model.pt2"`` instead loads a network saved with ``torch.export.save``. The network takes
normalised ``(B, 3, H, W)`` images (``mean`` and ``std``; the classifier takes images in [0, 1]) and
returns ``(B, num_classes)`` logits from a final ``nn.Linear``.

``target_layer`` names the submodule whose output is the feature map that Grad-CAM explains, the
concept extractor describes and pruning masks (pytorch-grad-cam's convention; a name of
``named_modules()``, such as ``"layer4"``). The network is split there with ``torch.fx``: from the
input to the output of ``target_layer``, then from that output to the head's input, then the head.
So the network must be traceable by ``torch.fx`` (a file is already a graph), everything after
``target_layer`` must depend on its output alone (no skip connection around it), its output must be
``(B, C, h, w)``, and the head's input ``(B, D)``; the build checks each on one ``image_size`` image
(in eval mode, without gradients). The model's weights are the network's own: the state dict holds
them under ``body.<its names>`` and the head again under ``classifier.*``, so ``[original] checkpoint``
loads ``torch.save(net.state_dict())`` of the bare network.

A ``.pt2`` file is read only after checks that torch unpickles nothing in it: ``torch.export.load``
itself would call ``torch.load(weights_only=False)`` or ``pickle.loads`` on weights, constants or sample
inputs stored as pickles, load AOTInductor libraries, and ``eval`` symbolic shapes and guard code from
the file. A file holding any of these is refused, the guards (checks of the input's shape) are dropped,
and a graph that calls anything but ATen operators is refused. A program's train and eval behaviour
(BatchNorm, dropout) is the mode it was exported in, and it takes the batch sizes it was exported for:
export it in eval mode with a dynamic batch dimension. A TorchScript file is refused: its forward is
compiled and cannot be split at a layer.

The cache key holds a digest of the code: the ``.pt2`` file, or the factory's source file and the
other Python files of its top-level package. Files the factory reads itself are not in it.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from crayon_plugins.plugins.backbones._exported import load_exported
from pydantic import Field, PositiveFloat, PositiveInt
from torch import Tensor, fx, nn

from crayon_plugins.api import Backbone, Classifier, ConfigError, Params, hookimpl

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Part = Callable[[nn.Module, Tensor], Tensor]
"""A piece of the network's graph as a function of its owner (whose ``body`` is the network) and a tensor."""


class ModuleClassifier(Classifier):
    """A user's network split at ``target_layer``'s output by ``torch.fx``.

    ``body`` is the network (it owns every parameter) and ``classifier`` its final ``nn.Linear``.
    The two pieces of its graph are plain functions that reach the layers through ``self.body`` when
    they run, so they hold no module of their own: copies and moves of the classifier carry them.
    """

    def __init__(self, body: nn.Module, head: nn.Linear, parts: tuple[Part, Part], channels: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__(mean, std, channels=channels)
        self.body = body
        self.classifier = head
        self._parts = parts  # functions, not modules: nothing registered twice

    def forward_features(self, normalised: Tensor) -> Tensor:
        return self._parts[0](self, normalised)

    def pool(self, features: Tensor) -> Tensor:
        return self._parts[1](self, features)


class ModuleBackbone(Backbone):
    """A network of your own: ``factory`` builds it (``"package.module:function"`` or
    ``"path/to/file.py:function"``) or ``file`` holds it (``torch.export.save``), split at ``target_layer``."""

    class Params(Params):
        factory: str | None = Field(default=None, description='what builds the network: "package.module:function" or "path/to/file.py:function", called with `kwargs`; give this or `file`')
        kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for `factory`")
        file: str | None = Field(default=None, description="a .pt2 file written by torch.export.save (export it in eval mode with a dynamic batch dimension); give this or `factory`")
        target_layer: str = Field(description='the submodule whose output is the feature map that Grad-CAM, concepts and pruning use, as `named_modules()` names it: "layer4"')
        head: str | None = Field(default=None, description="the final nn.Linear, as `named_modules()` names it; default: the linear layer whose output is the network's output")
        num_classes_argument: str = Field(default="num_classes", description='the factory\'s keyword that takes the number of classes; "": pass none')
        replace_head: bool = Field(default=False, description="when the head's outputs are not the dataset's classes, replace it with a fresh nn.Linear (else an error)")
        mean: tuple[float, float, float] = Field(default=IMAGENET_MEAN, description="per-channel mean the network's inputs are normalised with")
        std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = Field(default=IMAGENET_STD, description="per-channel standard deviation the network's inputs are normalised with")
        image_size: PositiveInt = Field(default=224, description="side of the square image the build runs once through the network to check the split (for a file: the size it was exported for, unless that is dynamic)")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        p = self.params
        if (p.factory is None) == (p.file is None):
            raise ConfigError("backbone.factory: give either factory (a function that builds the network) or file (a torch.export file), not both or neither", "backbone.factory")
        if p.file is not None and p.kwargs:
            raise ConfigError("backbone.kwargs: arguments are for a factory; a file holds its network whole", "backbone.kwargs")
        if p.num_classes_argument and p.num_classes_argument in p.kwargs:
            where = "backbone.kwargs"
            raise ConfigError(f"{where}: {p.num_classes_argument!r} is passed as the number of classes (num_classes_argument); set num_classes_argument = \"\" to pass your own", where)

    def build(self, num_classes: int) -> Classifier:
        body, exported = (self._built(num_classes), False) if self.params.factory is not None else (self._loaded(), True)
        split = _split(body, self.params.target_layer, self.params.head, exported)
        head = self._head(body, split.head, num_classes)
        parts = (_compile(split.features), _compile(split.pool))
        size = _example_size(body, self.params.image_size) if exported else (self.params.image_size,) * 2
        channels = _probe(body, parts, head, size, self.params.target_layer)
        return ModuleClassifier(body, head, parts, channels, self.params.mean, self.params.std)

    def weights_digest(self) -> str | None:
        """SHA-256 of the network's code: the ``.pt2`` file, or the factory's source file and the other
        Python files of its top-level package."""
        if self.params.file is not None:
            path = Path(self.params.file)
            try:
                return _digest([path], path.parent)
            except OSError as error:
                raise ConfigError(f"backbone.file: {path}: cannot read it ({error.strerror})", "backbone.file") from None
        files, base = _source_files(self._factory())
        return _digest(files, base)

    def recipe(self, num_classes: int) -> dict[str, Any] | None:
        """The factory call and how the forward pass splits (``None`` for a file: the file is the recipe)."""
        p = self.params
        if p.factory is None:
            return None
        return {
            "factory": p.factory,
            "kwargs": self._kwargs(num_classes),
            "target_layer": p.target_layer,
            "head": p.head,
            "replace_head": p.replace_head,
            "forward": f"logits = net((x - mean) / std), the output of net.{p.target_layer} multiplied by neuron_mask per channel",
        }

    # --- the network -------------------------------------------------------------------------

    def _kwargs(self, num_classes: int) -> dict[str, Any]:
        extra = {self.params.num_classes_argument: num_classes} if self.params.num_classes_argument else {}
        return {**copy.deepcopy(self.params.kwargs), **extra}

    def _factory(self) -> Callable[..., Any]:
        return _resolve(self.params.factory)

    def _built(self, num_classes: int) -> nn.Module:
        where, spec = "backbone.factory", self.params.factory
        factory, kwargs = self._factory(), self._kwargs(num_classes)
        try:
            with _on_path(_file_of(spec)):
                network = factory(**kwargs)
        except Exception as error:  # noqa: BLE001 - the user's code may raise anything
            hint = ""
            if isinstance(error, TypeError) and self.params.num_classes_argument and self.params.num_classes_argument in str(error):
                hint = "; set backbone.num_classes_argument to the factory's keyword for the number of classes, or \"\" to pass none"
            raise ConfigError(f"{where}: {spec}(**{kwargs}) raised {type(error).__name__}: {error}{hint}", where) from None
        if not isinstance(network, nn.Module):
            raise ConfigError(f"{where}: {spec} returned a {type(network).__name__}, not an nn.Module", where)
        return network

    def _loaded(self) -> nn.Module:
        return load_exported(Path(self.params.file))

    def _head(self, body: nn.Module, name: str, num_classes: int) -> nn.Linear:
        """The head installed in ``body`` as an ``nn.Linear`` (sharing an exported head's parameters),
        replaced by a fresh one for ``num_classes`` when ``replace_head`` asks."""
        head = _as_linear(body.get_submodule(name), name)
        if head.out_features != num_classes:
            if not self.params.replace_head:
                where = "backbone.replace_head"
                raise ConfigError(
                    f"{where}: the network's head {name!r} has {head.out_features} outputs but the dataset has {num_classes} classes; "
                    f"set replace_head = true to train a fresh head, or build the network for {num_classes} classes",
                    where,
                )
            head = nn.Linear(head.in_features, num_classes, bias=head.bias is not None)
        _set_submodule(body, name, head)
        return head


# --- the factory -----------------------------------------------------------------------------


def _resolve(spec: str) -> Callable[..., Any]:
    """The callable ``spec`` names: ``module.path:attribute``, ``module.path.attribute`` or ``file.py:attribute``."""
    where = "backbone.factory"
    path, attribute = _parts_of(spec)
    module = _import_file(Path(path)) if path.endswith(".py") else _import(path)
    found: Any = module
    for name in attribute.split("."):
        if not hasattr(found, name):
            close = difflib.get_close_matches(name, [n for n in dir(found) if not n.startswith("_")], n=3)
            raise ConfigError(f"{where}: {path} has no attribute {attribute!r}" + (f"; close: {', '.join(close)}" if close else ""), where)
        found = getattr(found, name)
    if not callable(found):
        raise ConfigError(f"{where}: {spec} is a {type(found).__name__}, not callable", where)
    return found


def _parts_of(spec: str) -> tuple[str, str]:
    where = "backbone.factory"
    path, colon, attribute = spec.rpartition(":")
    if not colon:
        path, _, attribute = spec.rpartition(".")
    if not path or not attribute or ("/" in path and not path.endswith(".py")):
        raise ConfigError(f'{where}: {spec!r} is not "package.module:function" or "path/to/file.py:function"', where)
    return path, attribute


def _file_of(spec: str) -> Path | None:
    path = _parts_of(spec)[0]
    return Path(path) if path.endswith(".py") else None


def _import(name: str) -> Any:
    where = "backbone.factory"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(f"{error.name}.")):
            raise ConfigError(f"{where}: no module named {error.name!r} (install it, put it on PYTHONPATH, or name a .py file)", where) from None
        raise ConfigError(f"{where}: importing {name} raised ModuleNotFoundError: {error}", where) from None
    except Exception as error:  # noqa: BLE001 - the user's module may raise anything
        raise ConfigError(f"{where}: importing {name} raised {type(error).__name__}: {error}", where) from None


def _import_file(path: Path) -> Any:
    """The module of the Python file at ``path``, run afresh (so an edited file is read again)."""
    where = "backbone.factory"
    if not path.is_file():
        raise ConfigError(f"{where}: {path}: no such file", where)
    resolved = path.resolve()
    name = f"crayon_user_{_identifier(resolved.stem)}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickle look classes up there
    try:
        with _on_path(path):
            spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - the user's file may raise anything
        sys.modules.pop(name, None)
        raise ConfigError(f"{where}: running {path} raised {type(error).__name__}: {error}", where) from None
    return module


def _identifier(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


@contextmanager
def _on_path(path: Path | None) -> Iterator[None]:
    """``path``'s folder first on ``sys.path`` meanwhile, so the file imports its neighbours as a script would."""
    folder = None if path is None else str(path.resolve().parent)
    if folder is None or folder in sys.path:
        yield
        return
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        if folder in sys.path:
            sys.path.remove(folder)


def _source_files(factory: Callable[..., Any]) -> tuple[list[Path], Path]:
    """The factory's source file and the other Python files of its top-level package (for a module
    outside any package: the Python files beside it, which it may import), and the folder they are
    named relative to."""
    try:
        source = Path(inspect.getsourcefile(factory) or "")
    except TypeError:
        source = Path()
    module = sys.modules.get(getattr(factory, "__module__", "") or "")
    package = sys.modules.get((getattr(module, "__name__", "") or "").split(".")[0])
    folders = [Path(p) for p in getattr(package, "__path__", [])] if package is not module else []
    beside = source.parent.glob("*.py") if not folders and source.is_file() else ()
    files = sorted({*(p for folder in folders for p in folder.rglob("*.py")), *beside, *([source] if source.is_file() else [])})
    return files, (folders[0].parent if folders else source.parent)


def _digest(files: list[Path], base: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        name = path.relative_to(base) if path.is_relative_to(base) else path.name
        digest.update(f"{name}\0".encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


# --- the split -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """The network's graph in two pieces, their targets relative to the owner (``body.…``), and the head's name."""

    features: fx.Graph
    pool: fx.Graph
    head: str


def _split(body: nn.Module, target: str, head: str | None, exported: bool) -> Split:
    names = set(dict(body.named_modules()))
    if exported:  # a layer without weights has no module in the program, only its calls' nn_module_stack
        names |= {path for node in body.graph.nodes for path, _ in node.meta.get("nn_module_stack", {}).values()}
    _check_name(target, names, "target_layer")
    if head is not None:
        _check_name(head, names, "head")
    if exported:
        graph = body.graph
        feature = _exported_output(graph, target)
        head_node, head = _exported_head(graph, head)
    else:
        graph = _trace(body, {target} | ({head} if head else set()))
        feature = _traced_output(graph, target)
        head_node, head = _traced_head(graph, body, head)
    if head == target or head.startswith(f"{target}.") or target.startswith(f"{head}."):
        raise ConfigError(f"backbone.target_layer: {target!r} and the head {head!r} are one inside the other; name a layer before the head", "backbone.target_layer")
    (source,) = _inputs(graph)
    pooled = head_node.args[0]
    return Split(_piece(graph, source, feature, target), _piece(graph, feature, pooled, target), head)


def _check_name(name: str, names: set[str], field: str) -> None:
    if name in names and name:
        return
    where = f"backbone.{field}"
    close = difflib.get_close_matches(name, [n for n in names if n and n != "_guards_fn"], n=5, cutoff=0.5)
    raise ConfigError(f"{where}: the network has no submodule {name!r}" + (f"; close: {', '.join(close)}" if close else ""), where)


class _Tracer(fx.Tracer):
    """``torch.fx``'s tracer, keeping the named layers whole (their output is one node)."""

    def __init__(self, leaves: set[str]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return qualified_name in self.leaves or super().is_leaf_module(module, qualified_name)


def _trace(body: nn.Module, leaves: set[str]) -> fx.Graph:
    try:
        return _Tracer(leaves).trace(body)
    except Exception as error:  # noqa: BLE001 - fx raises TraceError, TypeError, NotImplementedError …
        where = "backbone.factory"
        raise ConfigError(
            f"{where}: torch.fx cannot trace {type(body).__name__} ({type(error).__name__}: {error}); its forward must not branch "
            "on tensor values, or save it with torch.export and give it as backbone.file",
            where,
        ) from None


def _inputs(graph: fx.Graph) -> list[fx.Node]:
    found = [n for n in graph.nodes if n.op == "placeholder"]
    if len(found) != 1:
        raise ConfigError(f"backbone.factory: the network's forward takes {len(found)} inputs; it must take the images alone", "backbone.factory")
    return found


def _traced_output(graph: fx.Graph, target: str) -> fx.Node:
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == target]
    if len(calls) != 1:
        where = "backbone.target_layer"
        how = "never called in the network's forward" if not calls else f"called {len(calls)} times in the network's forward"
        raise ConfigError(f"{where}: {target!r} is {how}; name a layer that runs once", where)
    return calls[0]


def _exported_output(graph: fx.Graph, target: str) -> fx.Node:
    """The one node of the exported graph whose value leaves ``target``'s call (by ``nn_module_stack``)."""
    where = "backbone.target_layer"
    inside = {n for n in graph.nodes if any(path == target for path, _ in n.meta.get("nn_module_stack", {}).values())}
    if any(path.startswith(f"{target}@") for n in graph.nodes for path, _ in n.meta.get("nn_module_stack", {}).values()):
        raise ConfigError(f"{where}: {target!r} is called more than once in the network's forward; name a layer that runs once", where)
    outputs = [n for n in inside if any(user not in inside for user in n.users)]
    if len(outputs) != 1:
        how = "computes nothing in the saved program" if not outputs else f"gives {len(outputs)} values to the rest of the network"
        raise ConfigError(f"{where}: {target!r} {how}; name a layer with one output", where)
    return outputs[0]


def _result(graph: fx.Graph) -> fx.Node:
    (output,) = [n for n in graph.nodes if n.op == "output"]
    value = output.args[0]
    while isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if not isinstance(value, fx.Node):
        raise ConfigError("backbone.head: the network does not return one tensor of logits", "backbone.head")
    return value


def _traced_head(graph: fx.Graph, body: nn.Module, head: str | None) -> tuple[fx.Node, str]:
    where, last = "backbone.head", _result(graph)
    if head is not None and not isinstance(body.get_submodule(head), nn.Linear):
        raise ConfigError(f"{where}: {head!r} is a {type(body.get_submodule(head)).__name__}, not an nn.Linear", where)
    found = last.target if last.op == "call_module" and isinstance(body.get_submodule(last.target), nn.Linear) else None
    return _checked_head(last, found, head)


def _exported_head(graph: fx.Graph, head: str | None) -> tuple[fx.Node, str]:
    last = _result(graph)
    found = None
    if last.op == "call_function" and last.target is torch.ops.aten.linear.default:
        weight = last.args[1]
        if isinstance(weight, fx.Node) and weight.op == "get_attr" and weight.target.endswith(".weight"):
            found = weight.target.removesuffix(".weight")
    return _checked_head(last, found, head)


def _checked_head(last: fx.Node, found: str | None, head: str | None) -> tuple[fx.Node, str]:
    where = "backbone.head"
    if found is None:
        what = f"{head!r}'s output" if head else "the output of an nn.Linear"
        raise ConfigError(f"{where}: the network's output is not {what} (the last operation is {last.target!r}); the head must be a final nn.Linear whose output is returned", where)
    if head is not None and found != head:
        raise ConfigError(f"{where}: the network's output comes from {found!r}, not {head!r}; the head must be the final nn.Linear", where)
    if len(last.args) < 1 or not isinstance(last.args[0], fx.Node):
        raise ConfigError(f"{where}: {found!r} takes no tensor input", where)
    return last, found


def _piece(graph: fx.Graph, start: fx.Node, end: fx.Node, target: str) -> fx.Graph:
    """A graph from ``start``'s value to ``end``'s, its modules and attributes reached through ``self.body``."""
    needed = _ancestors(end, start)
    source = _inputs(graph)[0]
    if start is not source and source in needed:
        crossing = _crossing(graph, needed, start, source)
        where = "backbone.target_layer"
        raise ConfigError(
            f"{where}: after {target!r} the network still uses values computed before it ({crossing}): a skip connection around "
            "the target layer. Name a layer that every path from the input to the head passes through",
            where,
        )
    piece = fx.Graph()
    env = {start: piece.placeholder("x")}
    for node in graph.nodes:
        if node in needed and node is not start and node.op != "placeholder":
            env[node] = piece.node_copy(node, lambda n: env[n])
            if node.op in ("get_attr", "call_module"):
                env[node].target = f"body.{node.target}"
    piece.output(env[end])
    piece.lint()
    return piece


def _ancestors(end: fx.Node, stop: fx.Node) -> set[fx.Node]:
    """``end`` and every node it depends on, not looking past ``stop``."""
    found, todo = {end}, [end]
    while todo:
        node = todo.pop()
        if node is stop:
            continue
        for parent in node.all_input_nodes:
            if parent not in found:
                found.add(parent)
                todo.append(parent)
    return found


def _crossing(graph: fx.Graph, needed: set[fx.Node], feature: fx.Node, source: fx.Node) -> str:
    """The values computed before the feature map (not from it) that the part after it uses."""
    after, from_input = _descendants(graph, feature), _descendants(graph, source)
    crossing = [n for n in needed if n in from_input and n not in after and any(u in after and u in needed for u in n.users)]
    return ", ".join(sorted({_label(n) for n in crossing})) or "the input"


def _label(node: fx.Node) -> str:
    """The innermost module that computed ``node`` (its name when none did)."""
    stack = list(node.meta.get("nn_module_stack", {}).values())
    return (stack[-1][0] if stack else "") or node.name


def _descendants(graph: fx.Graph, start: fx.Node) -> set[fx.Node]:
    found = {start}
    for node in graph.nodes:
        if any(parent in found for parent in node.all_input_nodes):
            found.add(node)
    return found


def _compile(graph: fx.Graph) -> Part:
    """``graph`` as a Python function ``(owner, x)``, as ``torch.fx.GraphModule`` generates it."""
    code = graph.python_code(root_module="self")
    namespace = dict(code.globals)
    exec(compile(code.src, "<crayon module backbone>", "exec"), namespace)  # noqa: S102 - fx's own generated code
    return namespace["forward"]


# --- the head and the checks -----------------------------------------------------------------


def _as_linear(module: nn.Module, name: str) -> nn.Linear:
    """``module`` as an ``nn.Linear``: itself, or (for an exported head, a plain module) one holding its parameters."""
    if isinstance(module, nn.Linear):
        return module
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    if not isinstance(weight, nn.Parameter) or weight.ndim != 2:
        raise ConfigError(f"backbone.head: {name!r} is not a linear layer", "backbone.head")
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    linear.weight = weight
    if bias is not None:
        linear.bias = bias
    return linear


def _set_submodule(body: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(body.get_submodule(parent), leaf, module)


def _example_size(body: nn.Module, default: int) -> tuple[int, int]:
    """The height and width an exported program takes (``default`` where dynamic); a :class:`ConfigError` for a fixed batch size."""
    (source,) = _inputs(body.graph)
    value = source.meta.get("val")
    if value is None or value.ndim != 4:
        raise ConfigError("backbone.file: the program does not take (B, 3, H, W) images", "backbone.file")
    batch, _, height, width = value.shape
    if not isinstance(batch, torch.SymInt):
        raise ConfigError(
            f"backbone.file: the program was exported for batches of {batch} images only; export it with a dynamic batch "
            'dimension: torch.export.export(model, (images,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})',
            "backbone.file",
        )
    return tuple(default if isinstance(side, torch.SymInt) else int(side) for side in (height, width))


@dataclass
class _Owner:
    body: nn.Module


def _probe(body: nn.Module, parts: tuple[Part, Part], head: nn.Linear, size: tuple[int, int], target: str) -> int:
    """The feature map's channels, after checking the shapes of both pieces on one image (eval mode, no gradients)."""
    owner, modes = _Owner(body), {m: m.training for m in body.modules()}
    body.eval()
    try:
        with torch.no_grad():
            try:
                features = parts[0](owner, torch.full((2, 3, *size), 0.5))
            except Exception as error:  # noqa: BLE001 - the user's network may raise anything
                where = "backbone.image_size"
                raise ConfigError(f"{where}: the network fails on {size[0]}×{size[1]} images ({type(error).__name__}: {error}); set the image size it takes", where) from None
            if features.ndim != 4:
                raise ConfigError(f"backbone.target_layer: {target!r} gives {tuple(features.shape)}, not a (B, C, h, w) feature map; name a convolutional layer", "backbone.target_layer")
            pooled = parts[1](owner, features)
    finally:
        for module, mode in modes.items():
            module.training = mode
    if pooled.ndim != 2 or pooled.shape[1] != head.in_features:
        where = "backbone.head"
        raise ConfigError(f"{where}: between {target!r} and the head the network gives {tuple(pooled.shape)}, but the head takes (B, {head.in_features})", where)
    return features.shape[1]


@hookimpl
def crayon_backbones():
    return {"module": ModuleBackbone}
