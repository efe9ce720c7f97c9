"""The ``crayon`` command line.

User errors (bad configuration, unknown or broken plugins) print one paragraph and exit with status 2;
``crayon --debug …`` (or ``CRAYON_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crayon_plugins.annotation.records import Answer, Question
from crayon_plugins.annotation.sheets import render_sheets
from crayon_plugins.api.components import Need
from crayon_plugins.config import RunConfig, load_config
from crayon_plugins.errors import CrayonError, RunIncomplete
from crayon_plugins.model.saved import ExportFormat
from crayon_plugins.registry import Registry, default_registry
from crayon_plugins.run.cache import ArtefactCache
from crayon_plugins.run.pipeline import Pipeline
from crayon_plugins.run.results import Results
from crayon_plugins.run.stages import explain
from crayon_plugins.run.stages.annotate import MapsOf, noise_free_answers, prepare_task
from crayon_plugins.run.stages.load import load
from crayon_plugins.run.stages.original import original_model
from crayon_plugins.run.table import markdown_table
from crayon_plugins.utils.files import writable_folder
from crayon_plugins.utils.progress import console, warn

app = typer.Typer(
    help="Correct where image classifiers look, from yes / no judgements of their explanations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help renders as written: [concepts] is a section name, not markup
)
stdout = Console(width=None if sys.stdout.isatty() else 160)  # tables stay whole in logs and pipes
_debug = False


def _print_version(asked: bool) -> None:
    if asked:
        from crayon_plugins import __version__

        stdout.print(f"crayon-plugins {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    global _debug  # set afresh by every invocation
    _debug = debug or os.environ.get("CRAYON_DEBUG", "") not in ("", "0")


def user_errors(command: Callable) -> Callable:
    """Turn a :class:`CrayonError` into a message on stderr and exit status 2."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CrayonError as error:
            if _debug:
                raise
            console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _warn_broken(registry: Registry) -> None:
    for broken in registry.broken:
        warn(f"{broken.describe()}; its components are unavailable")


@app.command()
@user_errors
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """List every component with its kind, name, plugin and module. Exits 2 if a plugin is broken
    or two plugins registered one name."""
    registry = default_registry()
    rows = [{"kind": r.kind, "name": r.name, "plugin": r.plugin, "module": r.module} for r in registry.all()]
    conflicts = [
        {"kind": kind, "name": name, "plugins": [r.plugin for r in regs], "modules": [r.module for r in regs]}
        for (kind, name), regs in registry.conflicts.items()
    ]
    broken = [{"plugin": b.plugin, "entry_point": b.entry_point, "error": b.error} for b in registry.broken]
    if as_json:
        typer.echo(json.dumps({"components": rows, "conflicts": conflicts, "broken": broken}, indent=2))
    else:
        table = Table("kind", "name", "plugin", "module", title="crayon components")
        for row in rows:
            table.add_row(row["kind"].replace("_", " "), row["name"], row["plugin"], row["module"])
        stdout.print(table)
        for conflict in conflicts:
            console.print(f"[bold red]conflict:[/] {conflict['kind']} {conflict['name']!r} is registered by plugins {' and '.join(conflict['plugins'])}")
        _warn_broken(registry)
    if conflicts or broken:
        raise typer.Exit(2)


ConfigOption = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML run configuration (default: built-in defaults).")]


COMPARE_SEEDS = "0,1,2,3,4"
"""``crayon compare``'s seeds unless ``--seeds`` says otherwise."""
SeedsOption = Annotated[Optional[str], typer.Option("--seeds", "-s", help="Comma-separated seeds, e.g. 0,1,2 (default: the configuration's one seed); several give mean ± std.")]
JobsOption = Annotated[int, typer.Option("--jobs", "-j", help="With several seeds: cells run in parallel processes (0: one per seed, up to the cores).")]


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CrayonError(f"--seeds: expected comma-separated whole numbers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise CrayonError(f"--seeds: expected distinct seeds, got {text!r}")
    return seeds


OverridesArgument = Annotated[
    Optional[list[str]], typer.Argument(help="Options that override the configuration file, KEY=VALUE with a dotted key, e.g. training.epochs=1 refiner.crayon-attention.w_no=1e4 (the value in TOML syntax).", show_default=False)
]


def _run(config: Path | None, refiners: str | None, out: Path, every_refiner: bool, seeds: str | None, jobs: int, overrides: list[str] | None = None) -> Results:
    """Run the pipeline with the chosen refiners (``None``: the configuration's, or with
    ``every_refiner`` every registered one) on one seed or several, print its table and write
    ``out/results.json``."""
    run_config = load_config(config, overrides or ())
    registry = default_registry()
    _warn_broken(registry)
    if refiners is not None:
        names = [n.strip() for n in refiners.split(",") if n.strip()]
    else:
        names = registry.names("refiner") if every_refiner else run_config.refiners
    chosen = _seeds(seeds)
    if chosen is not None and len(chosen) == 1:  # one seed: a plain run, without a deviation to show
        run_config = run_config.model_copy(update={"seed": chosen[0]})
    pipeline = Pipeline.from_config(run_config, names, ArtefactCache())  # every component, before any work
    if refiners is None and every_refiner and not pipeline.dataset.has_groups() and (grouped := pipeline.needing(Need.GROUPS)):
        console.print(f"note: leaving out {', '.join(grouped)}: they need group labels, which dataset {run_config.dataset.name!r} does not have", highlight=False)
        names = [n for n in names if n not in grouped]
        pipeline = Pipeline.from_config(run_config, names, ArtefactCache())
    writable_folder(out, "--out")
    if chosen is None or len(chosen) == 1:
        try:
            results = pipeline.run(out)
        except RunIncomplete as error:  # the table of what ran, then the error naming what did not
            stdout.print(error.results.table())
            raise
    else:
        from crayon_plugins.study.seeds import run_seeds

        results = run_seeds(run_config, names, chosen, out, jobs or min(len(chosen), os.cpu_count() or 1))
    stdout.print(results.table())
    return results


@app.command()
@user_errors
def run(
    config: ConfigOption = None,
    refiners: Annotated[Optional[str], typer.Option("--refiners", "-r", help="Comma-separated refiners (default: the configuration's).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for results.json.")] = Path("runs/latest"),
    seeds: SeedsOption = None,
    jobs: JobsOption = 0,
    overrides: OverridesArgument = None,
) -> None:
    """Train (or load) the original model, annotate, refine, evaluate; print a table and write
    OUT/results.json, OUT/training.csv (every epoch's loss terms and validation metrics), the
    figures, and each method's model in OUT/models/METHOD (crayon export turns one into ONNX)."""
    _run(config, refiners, out, False, seeds, jobs, overrides)
    console.print(f"wrote {out / 'results.json'}")


@app.command()
@user_errors
def compare(
    config: ConfigOption = None,
    refiners: Annotated[Optional[str], typer.Option("--refiners", "-r", help="Comma-separated refiners (default: every registered one).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for table.md and results.json.")] = Path("runs/compare"),
    seeds: Annotated[str, typer.Option("--seeds", "-s", help="Comma-separated seeds; mean ± std over them (a seed draws the training, generated data and oracle noise).")] = COMPARE_SEEDS,
    jobs: JobsOption = 0,
    overrides: OverridesArgument = None,
) -> None:
    """Run every registered refiner (or the chosen ones) on the same original model, maps and
    annotations; write OUT/table.md (method, annotation kind, WGA, MGA, accuracy, RA, UA, mean ± std
    over seeds, best in bold), OUT/table-RULE.md for each rule of [selection] also (looked up from
    the same trainings) and OUT/results.json."""
    try:
        results = _run(config, refiners, out, True, seeds, jobs, overrides)
    except RunIncomplete as error:  # the tables of what ran, then the error naming what did not
        write_tables(error.results, out)
        raise
    written = write_tables(results, out)
    console.print(f"wrote {', '.join(str(path) for path in written)} and {out / 'results.json'}")


def write_tables(results: Results, out: Path) -> list[Path]:
    """OUT/table.md under the run's selection rule, and OUT/table-RULE.md for each other rule the run
    recorded (``[selection] also``)."""
    also = dict.fromkeys(rule for row in results.rows for entry in row.selection for rule in entry.get("rules", {}))
    tables = {out / "table.md": results, **{out / f"table-{rule}.md": results.under(rule) for rule in also}}
    for path, shown in tables.items():
        path.write_text(markdown_table(shown))
    return list(tables)


@app.command()
@user_errors
def export(
    model: Annotated[Path, typer.Argument(help="A saved model's folder (OUT/models/METHOD of a run), with card.json and weights.safetensors.")],
    format: Annotated[ExportFormat, typer.Option("--format", "-f", help="safetensors (the weights), torch (a torch.export program, .pt2) or onnx.")] = ExportFormat.ONNX,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The file to write (default: MODEL/model.pt2, MODEL/model.onnx; for safetensors the weights file itself).")] = None,
) -> None:
    """Write the saved model MODEL in another format. The torch and onnx exports take images in
    [0, 1] of the card's input size, any batch size, and include the normalisation and the pruning
    mask; see docs/data-and-models.md for loading each in plain torch or onnxruntime."""
    from crayon_plugins.model.saved import export_model

    if out is not None:
        writable_folder(out.parent, "--out")
    path = export_model(model, format, out)
    console.print(escape(f"wrote {path}"), highlight=False)


@app.command()
@user_errors
def concepts(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the sheets and index.md.")],
    config: ConfigOption = None,
    neurons: Annotated[Optional[str], typer.Option("--neurons", "-n", help="Comma-separated neuron numbers (default: all).")] = None,
) -> None:
    """Train (or load) the original model, extract its neuron concepts (configuration section
    [concepts]) and render one PNG sheet per neuron plus OUT/index.md, for a person to judge."""
    pipeline = Pipeline.from_config(load_config(config), [], ArtefactCache())
    writable_folder(out, "--out")
    train = load(pipeline, "train")
    model = original_model(pipeline, train).model
    found = explain.concepts(pipeline, model, train)
    chosen = None
    if neurons is not None:
        try:
            chosen = [int(n) for n in neurons.split(",") if n.strip()]
        except ValueError:
            raise CrayonError(f"--neurons: expected comma-separated numbers, got {neurons!r}") from None
        if bad := [n for n in chosen if not 0 <= n < len(found)]:
            raise CrayonError(f"--neurons: the model has neurons 0 to {len(found) - 1}, not {bad}")
    index = render_sheets(found, train, out, chosen)
    console.print(f"wrote {len(chosen) if chosen is not None else len(found)} concept sheets and {index}")


@app.command()
@user_errors
def check(
    kind: Annotated[str, typer.Argument(help="Component kind: backbone, dataset, interpreter, concept-extractor, annotation-source, refiner or metric.")],
    name: Annotated[str, typer.Argument(help="The component's registered name.")],
    options: Annotated[str, typer.Option("--options", "-o", help="The component's options as a JSON object.")] = "{}",
) -> None:
    """Build the registered component NAME and run its kind's contract check (crayon_plugins.testing):
    print each promise kept or broken, and exit 1 if any is broken."""
    from crayon_plugins.factory import create
    from crayon_plugins.testing import CHECKS, ContractError

    key = kind.replace("-", "_")
    if key not in CHECKS:
        raise CrayonError(f"check: KIND must be one of {', '.join(k.replace('_', '-') for k in CHECKS)}, not {kind!r}")
    try:
        params = json.loads(options)
    except json.JSONDecodeError as error:
        raise CrayonError(f"--options: not JSON ({error}): {options!r}") from None
    if not isinstance(params, dict):
        raise CrayonError(f"--options: expected a JSON object of options, got {options!r}")
    component = create(key, name, params, where="--options")
    try:
        report = CHECKS[key](component)
        kept, broken, skipped, models = report.kept, [], report.skipped, report.models
    except ContractError as error:
        kept, broken, skipped, models = error.kept, error.broken, error.skipped, error.models
    table = Table("promise", "", "how it broke", title=f"{kind} {name}: {len(kept)} of {len(kept) + len(broken)} promises kept")
    for promise in kept:
        table.add_row(promise, "[green]kept[/]", "")
    for promise in skipped:
        table.add_row(promise, "[dim]not applicable[/]", "")
    for failure in broken:
        table.add_row(failure.promise, "[bold red]broken[/]", escape(failure.detail))
    stdout.print(table)
    if models:
        stdout.print(escape(f"checked on {', '.join(models)}"))
    if broken:
        raise typer.Exit(1)


@app.command("new-plugin")
@user_errors
def new_plugin(
    name: Annotated[str, typer.Argument(help="Plugin name: lower-case words joined by hyphens; also the refiner's name.")],
    directory: Annotated[Path, typer.Option("--dir", "-d", help="Folder to create NAME/ in.")] = Path("."),
) -> None:
    """Scaffold the plugin distribution crayon-NAME in DIR/NAME: a working refiner, its entry point, and
    a test running the kit's contract checks. Then: pip install -e 'NAME[test]' and pytest NAME."""
    from crayon_plugins.testing.scaffold import new_plugin as scaffold

    registry = default_registry()
    if taken := [r for r in registry.all() if r.name == name]:
        owners = ", ".join(f"{r.kind.replace('_', ' ')} of plugin {r.plugin!r}" for r in taken)
        warn(f"{name!r} is already registered ({owners}); installing this plugin will make the name ambiguous until you rename its refiner")
    root = scaffold(name, directory)
    console.print(escape(f"wrote {root}; next: pip install -e '{root}[test]' && pytest {root}"), highlight=False)


study_app = typer.Typer(help="Studies: one configuration over a grid of budgets, noise, panels, refiners and seeds.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(study_app, name="study")


@study_app.command("run")
@user_errors
def study_run(
    spec: Annotated[Path, typer.Argument(help="TOML study specification.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Directory for results.csv (default: SPEC without .toml).")] = None,
    executor: Annotated[str, typer.Option("--executor", "-e", help="local (processes on this machine) or ray (a Ray cluster; pip install 'crayon-plugins[ray]').")] = "local",
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="local: cells run in parallel processes (default: the cores over the study's threads).")] = None,
    address: Annotated[Optional[str], typer.Option("--address", help="ray: the cluster to join (auto: the one `ray start` made on this machine; default: start Ray here for this study).")] = None,
) -> None:
    """Run every cell of the study not yet finished in OUT (killed, it resumes where it stopped) and
    write OUT/results.csv: one row per cell and metric. Each cell runs with the study's `threads`,
    so results do not depend on the executor."""
    from crayon_plugins.study.runner import run_study

    path = run_study(spec, out or spec.with_suffix(""), jobs, executor=executor, address=address)
    console.print(f"wrote {path}")


@study_app.command("report")
@user_errors
def study_report(directory: Annotated[Path, typer.Argument(help="A study's output directory (with results.csv and spec.toml).")]) -> None:
    """Write DIRECTORY/report.md with plots: WGA against budget, noise and measured agreement, mean and
    95% interval over seeds, and a short summary."""
    from crayon_plugins.study.report import write_report

    console.print(f"wrote {write_report(directory)}")


annotate_app = typer.Typer(help="People answer: an annotation page, Label Studio export and import, and a report of the annotators.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(annotate_app, name="annotate")

QuestionOption = Annotated[Question, typer.Option("--question", "-q", help="maps (yes / no / maybe on Grad-CAM maps), neurons (on concept sheets) or attention (paint where to look).")]


MapsOfOption = Annotated[
    MapsOf,
    typer.Option("--maps-of", help="With --question maps: the map of each image's label, or of the class the model predicts (what gradia's answers are about)."),
]


def _task(config: Path | None, question: Question, folder: Path | None, sources: bool = False, maps_of: MapsOf = MapsOf.LABEL):
    """The pipeline of ``config`` and the prepared annotation task of ``question`` in ``folder``
    (:func:`_task_folder`). Unless ``sources``, the configuration's annotation sources are not built: the task is what people
    are asked, and their answers file need not exist yet."""
    if maps_of != MapsOf.LABEL and question != Question.MAPS:
        raise CrayonError(f"--maps-of {maps_of}: applies to --question maps, not {question}")
    run_config = load_config(config)
    if not sources:
        defaults = RunConfig()
        run_config = run_config.model_copy(update={"annotator": defaults.annotator, "neuron_annotator": defaults.neuron_annotator, "evaluation": defaults.evaluation})
    pipeline = Pipeline.from_config(run_config, [], ArtefactCache())
    return pipeline, prepare_task(pipeline, question, _task_folder(question, folder, maps_of), maps_of)


def _task_folder(question: Question, folder: Path | None, maps_of: MapsOf) -> Path:
    """The ``--task`` folder (default ``annotation/QUESTION``, ``annotation/maps-predicted`` for
    the predicted classes' maps), checked to be writable."""
    folder = folder if folder is not None else Path("annotation") / (question if maps_of == MapsOf.LABEL else f"{question}-{maps_of}")
    return writable_folder(folder, "--task")


@annotate_app.command("serve")
@user_errors
def annotate_serve(
    config: ConfigOption = None,
    question: QuestionOption = Question.MAPS,
    annotator: Annotated[Optional[str], typer.Option("--annotator", "-a", help="The name the page starts with (default: it asks; ?annotator=NAME in the address chooses).")] = None,
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8765,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    task: Annotated[Optional[Path], typer.Option("--task", "-t", help="Task folder: pictures and answers.jsonl (default: annotation/QUESTION).")] = None,
    maps_of: MapsOfOption = MapsOf.LABEL,
    public_url: Annotated[Optional[list[str]], typer.Option("--public-url", help="An address people reach the page at through a reverse proxy (http[s]://NAME[:PORT]); the page accepts requests only for its own address and these.")] = None,
) -> None:
    """Train or load the original model (cached), explain it and serve a page where people answer
    QUESTION about the items the [budget] selects, most useful first. Every answer is appended to
    TASK/answers.jsonl at once; a restart resumes where each person stopped."""
    from crayon_plugins.annotation.answers import ANNOTATOR_NAME
    from crayon_plugins.annotation.server import address_of, check_port, serve
    from crayon_plugins.annotation.task import held

    if annotator is not None and not ANNOTATOR_NAME.match(annotator):
        raise CrayonError(f"--annotator: {annotator!r} is not a name (letters, digits and _ . @ -, at most 64)")
    if not 0 < port < 65536:
        raise CrayonError(f"--port: {port} is not a port number (1 to 65535)")
    for url in public_url or ():
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise CrayonError(f"--public-url: {url!r} is not an address like https://annotate.lab.org")
    try:  # fail before the model is trained, not after
        check_port(host, port)
    except OSError as error:
        raise CrayonError(f"--port: cannot listen on {host}:{port} ({error.strerror or error})") from None
    with held(_task_folder(question, task, maps_of), address_of(host, port)):
        _, prepared = _task(config, question, task, maps_of=maps_of)
        console.print(escape(f"serving {len(prepared.items)} {question} items at {address_of(host, port)}/ · answers go to {prepared.answers} · Ctrl-C stops"), highlight=False)
        serve(prepared, host, port, annotator, public_url or ())


@annotate_app.command("export")
@user_errors
def annotate_export(
    out: Annotated[Path, typer.Argument(help="Folder for the pictures, tasks.json and labeling-config.xml.")],
    config: ConfigOption = None,
    question: QuestionOption = Question.MAPS,
    format: Annotated[str, typer.Option("--format", "-f", help="Export format: label-studio.")] = "label-studio",
    predictions: Annotated[bool, typer.Option("--predictions", help="Pre-annotate each task with the configured simulated [annotator]'s answer.")] = False,
    url_prefix: Annotated[str, typer.Option("--url-prefix", help="Prefix of the picture addresses in tasks.json (Label Studio's local-files serving by default).")] = "/data/local-files/?d=",
    maps_of: MapsOfOption = MapsOf.LABEL,
) -> None:
    """Write QUESTION's task for Label Studio: the pictures, OUT/tasks.json (one task per item, with
    its id) and OUT/labeling-config.xml (yes / no / maybe, or a brush for attention). Serve OUT's parent as Label Studio's
    local-files document root, or pass --url-prefix."""
    from crayon_plugins.annotation.label_studio import ExportItem, write_tasks

    if format != "label-studio":
        raise CrayonError(f"--format: only label-studio is supported, not {format!r}")
    if predictions and question == Question.ATTENTION:
        raise CrayonError("--predictions: applies to maps and neurons; nobody's drawing is painted in advance")
    if predictions and maps_of != MapsOf.LABEL:
        raise CrayonError("--predictions: the simulated annotator's answers are about the labels' maps; leave it out with --maps-of predicted")
    pipeline, task = _task(config, question, out, sources=predictions, maps_of=maps_of)
    which = "annotator" if question == Question.MAPS else "neuron_annotator"
    codes = _noise_free_answers(pipeline, question, which) if predictions else None
    guesses = None if codes is None else {item: Answer(code).name.lower() for item, code in codes.items()}
    items = [ExportItem(i.item, {k: f"{url_prefix}{out.name}/{v}" for k, v in i.files.items()}, i.label) for i in task.items]
    tasks, labeling = write_tasks(out, question, items, task.key, guesses, getattr(pipeline, which).name)
    console.print(escape(f"wrote {len(items)} tasks to {tasks} and the labeling config {labeling}"), highlight=False)


@annotate_app.command("import")
@user_errors
def annotate_import(
    export: Annotated[Path, typer.Argument(help="Label Studio's JSON export of the project.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Answers file to write (JSON lines); must not exist yet.")],
    question: QuestionOption = Question.MAPS,
    drop_prefilled: Annotated[bool, typer.Option("--drop-prefilled", help="Leave out answers submitted with the prediction's pre-selected choice unchanged (they are counted either way).")] = False,
) -> None:
    """Read Label Studio's JSON export (each annotation's choice, or painted region saved as a mask
    beside OUT; completed_by as the annotator, by
    full e-mail or user id; skipped tasks and cancelled annotations give no answer; tasks that are
    not crayon's are counted and left out) into an answers file for the human source."""
    import io

    import numpy as np
    from PIL import Image

    from crayon_plugins.annotation.answers import append
    from crayon_plugins.annotation.label_studio import read_export
    from crayon_plugins.utils.files import write_atomically

    if out.exists():
        raise CrayonError(f"--out: {out} exists; importing into it would mix two exports (choose a new file)")
    writable_folder(out.parent, "--out")
    imported = read_export(export, question, drop_prefilled)
    try:
        out.touch(exist_ok=False)
        for relative, painted in imported.drawings.items():  # each mask complete before the line naming it
            buffer = io.BytesIO()
            Image.fromarray(painted.astype(np.uint8) * 255).save(buffer, format="PNG")
            write_atomically(out.parent / relative, buffer.getvalue())
        for record in imported.records:
            append(out, record)
    except OSError as error:
        raise CrayonError(f"--out: cannot write {out} ({error.strerror or error})") from None
    people = sorted({r.annotator for r in imported.records})
    console.print(escape(f"wrote {len(imported.records)} answers by {len(people)} annotators ({', '.join(people)}) to {out}"), highlight=False)
    if imported.foreign_tasks:
        console.print(escape(f"note: left out {imported.foreign_tasks} task(s) without data.item (not from crayon annotate export; e.g. made by syncing a storage)"), highlight=False)
    if imported.prefilled:
        counts = ", ".join(f"{who} {n}" for who, n in sorted(imported.prefilled.items()))
        what = "left out (--drop-prefilled)" if drop_prefilled else "kept; --drop-prefilled leaves them out"
        warn(f"answers submitted with the prediction's pre-selected choice unchanged: {counts}; {what}")


@annotate_app.command("report")
@user_errors
def annotate_report(
    answers: Annotated[list[Path], typer.Argument(help="Answers files (JSON lines).")],
    config: ConfigOption = None,
    question: QuestionOption = Question.MAPS,
    figure: Annotated[Optional[Path], typer.Option("--figure", help="The answer-mix figure (default: beside the first answers file, answer-mix.png).")] = None,
    oracle: Annotated[bool, typer.Option("--oracle/--no-oracle", help="Compare with the noise-free oracle of the configuration ([evaluation] judge for maps, [neuron_annotator] for neurons).")] = True,
) -> None:
    """Per annotator: answers, yes / no / maybe shares, seconds per answer, Cohen's κ with the others
    and with the oracle; and a figure of the answer mix beside the CRAYON paper's annotators'."""
    from crayon_plugins.annotation.answers import read_records
    from crayon_plugins.annotation.report import answer_mix_figure, summarise_people, summary_table

    records = [r for path in answers for r in read_records(path) if r.question == question]
    if not records:
        raise CrayonError(f"{', '.join(map(str, answers))}: no {question} answers")
    truth = None
    if oracle:
        pipeline = Pipeline.from_config(load_config(config), [], ArtefactCache())
        truth = _noise_free_answers(pipeline, question, "judge" if question == Question.MAPS else "neuron_annotator")
    summaries = summarise_people(records, truth)
    stdout.print(summary_table(summaries))
    path = figure or answers[0].parent / "answer-mix.png"
    answer_mix_figure(summaries, question, path)
    console.print(escape(f"wrote {path}"), highlight=False)


def _noise_free_answers(pipeline: Pipeline, question: Question, which: str) -> dict[str, int] | None:
    """The noise-free answers of the pipeline's ``which`` source (``annotator``, ``judge`` or
    ``neuron_annotator``), or ``None`` with a note where it is not a simulated annotator."""
    source = getattr(pipeline, which)
    found = noise_free_answers(pipeline, question, source)
    if found is None:
        console.print(f"note: {which} {source.name!r} is not a simulated annotator; no oracle to compare with", highlight=False)
    return found


def main() -> None:
    app()
