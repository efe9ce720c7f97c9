"""The annotation page: a small FastAPI app over one task folder (:mod:`crayon_plugins.annotation.task`).

``GET /`` is the page; ``GET /api/task?annotator=NAME`` the items and that person's own answers
(never anyone else's) with their *revision*, the number of lines they have written;
``POST /api/answer``, ``/api/undo`` and ``/api/drawing`` append to the answers file, fsynced
before the reply; ``GET /files/PATH`` serves the task's pictures and nothing outside the task folder.

Every write names the item on screen, its ``position`` in the task and the revision the page
last saw: a position that does not show the item, or a stale revision (another page wrote as the
same person since), is a 409 and writes nothing, so an answer can only land on the item that person
was shown. Requests must come to the page's own address (``Host``; this defeats DNS rebinding) and
writes must be JSON from the page's own origin (``Origin``, when a browser sends it): another web page
the annotator has open can neither read the task nor answer in their name. Every body is validated:
an unknown item, answer or annotator name, or a body over :data:`MAX_BODY` bytes, is a 4xx and writes
nothing.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import socket
import threading
import uuid
from collections.abc import Sequence
from importlib.resources import files
from urllib.parse import urlsplit

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crayon_plugins.annotation import answers as answer_files
from crayon_plugins.annotation.records import Question
from crayon_plugins.annotation.task import Task
from crayon_plugins.utils.files import write_atomically

MAX_BODY = 2 << 20
"""Largest request body accepted (a painted mask as a PNG data URL fits well within it)."""

Name = Field(pattern=answer_files.ANNOTATOR_NAME.pattern)


class Write(BaseModel):
    """What every write names: who, the item on screen, its position in the task and the revision
    of that person's answers the page last saw."""

    model_config = ConfigDict(extra="forbid")
    annotator: str = Name
    item: str = Field(min_length=1, max_length=512)
    position: int = Field(ge=0)
    revision: int = Field(ge=0)


class AnswerIn(Write):
    answer: str = Field(pattern="^(yes|no|maybe)$")


class UndoIn(Write):
    pass


class DrawingIn(Write):
    png: str = Field(pattern="^data:image/png;base64,")


LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def own_hosts(address: str) -> frozenset[str]:
    """The ``Host`` values a page served at ``address`` (``http://HOST:PORT``) answers to: the
    loopback names for a loopback address, this machine's names and addresses for a wildcard one."""
    parts = urlsplit(address)
    host, port = parts.hostname or "", f":{parts.port}" if parts.port else ""
    names = {host if ":" not in host else f"[{host}]"}
    if host in ("127.0.0.1", "localhost", "::1"):
        names |= set(LOOPBACK)
    elif host in ("0.0.0.0", "::", ""):
        names |= set(LOOPBACK) | {socket.gethostname(), socket.getfqdn()}
        try:
            names |= {a if ipaddress.ip_address(a).version == 4 else f"[{a}]" for *_, (a, *_) in socket.getaddrinfo(socket.gethostname(), None)}
        except OSError:
            pass
    return frozenset(f"{name}{port}".lower() for name in names)


def create_app(task: Task, address: str, annotator: str | None = None, public: Sequence[str] = ()) -> FastAPI:
    """The page and API for ``task``, served at ``address`` (``http://HOST:PORT``) and reached
    there or at the ``public`` addresses (a reverse proxy's), the only origins it accepts requests
    for; ``annotator``: the name the page starts with."""
    app = FastAPI(title="crayon annotate", docs_url=None, redoc_url=None, openapi_url=None)
    hosts = own_hosts(address) | {urlsplit(url).netloc.lower() for url in public}
    origins = {f"{urlsplit(address).scheme}://{host}" for host in own_hosts(address)} | {f"{urlsplit(url).scheme}://{urlsplit(url).netloc}".lower() for url in public}
    page = files("crayon_plugins.annotation").joinpath("web/annotate.html").read_text()
    writing = threading.Lock()
    # each person's effective answers in the order given, and how many lines they have written;
    # read once, then kept in step with each append
    answered: dict[str, dict[str, answer_files.Record]] = {}
    revisions: dict[str, int] = {}
    records = [r for r in answer_files.read_records(task.answers) if r.question == task.question]
    for record in records:
        revisions[record.annotator] = revisions.get(record.annotator, 0) + 1
    for (name, item), found in answer_files.latest(records).items():
        answered.setdefault(name, {})[item] = found

    @app.middleware("http")
    async def own_origin_only(request: Request, call_next):
        host = request.headers.get("host", "").lower()
        if host not in hosts:
            return JSONResponse({"detail": f"this page is served as {address}, not as {host!r}"}, status_code=421)
        if request.method == "POST":
            origin = request.headers.get("origin")
            if origin is not None and origin.lower() not in origins:
                return JSONResponse({"detail": f"writes come from the page at {address}, not from {origin!r}"}, status_code=403)
            if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
                return JSONResponse({"detail": "writes are JSON (Content-Type: application/json)"}, status_code=415)
        return await call_next(request)

    async def body(request: Request, model: type[BaseModel]) -> BaseModel:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            raise HTTPException(413, f"request body over {MAX_BODY} bytes")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise HTTPException(413, f"request body over {MAX_BODY} bytes")
        try:
            return model.model_validate_json(raw)
        except ValidationError as error:
            problem = error.errors()[0]
            raise HTTPException(422, f"{'.'.join(map(str, problem['loc'])) or 'body'}: {problem['msg']}") from None

    def checked(given: Write) -> None:
        """409 unless ``given`` names the item at its position and the person's current revision (call holding ``writing``)."""
        if given.position >= len(task.items) or task.items[given.position].item != given.item:
            if all(i.item != given.item for i in task.items):
                raise HTTPException(404, f"item {given.item!r} is not in this task")
            raise HTTPException(409, f"position {given.position} of this task does not show item {given.item!r}; reload the page")
        current = revisions.get(given.annotator, 0)
        if given.revision != current:
            raise HTTPException(409, f"{given.annotator} has answered from another page since this one last saw their answers (revision {given.revision}, now {current}); reload the page")

    def own_answers(name: str) -> list[answer_files.Record]:
        """``name``'s effective answers, in the order given (nobody else's)."""
        return list(answered.get(name, {}).values())

    def save(name: str, item: str, answer: str | None = None, drawing: str | None = None) -> dict:
        """Append the answer to the file (fsynced before returning), then to ``name``'s answers; what the page learns."""
        record = answer_files.Record(item=item, question=task.question, answer=answer, drawing=drawing, annotator=name, time=answer_files.now(), task=task.key)
        answer_files.append(task.answers, record)
        revisions[name] = revisions.get(name, 0) + 1
        mine = answered.setdefault(name, {})
        mine.pop(item, None)
        if answer is not None or drawing is not None:
            mine[item] = record
        return {"item": item, "answered": len(mine), "total": len(task.items), "revision": revisions[name]}

    @app.get("/", response_class=HTMLResponse)
    def show_page() -> str:
        return page

    @app.get("/api/task")
    def describe(annotator_name: str = Query(alias="annotator", pattern=answer_files.ANNOTATOR_NAME.pattern)) -> dict:
        with writing:
            mine = own_answers(annotator_name)
            revision = revisions.get(annotator_name, 0)
        done = {r.item: (r.answer if r.answer is not None else "drawn") for r in mine}
        position = next((i for i, item in enumerate(task.items) if item.item not in done), len(task.items))
        return {
            "question": task.question,
            "default_annotator": annotator,
            "image_size": task.image_size,
            "items": [{"item": i.item, "label": i.label, "predicted": i.predicted, "empty_map": i.empty_map, "prompt": task.prompt(i), "files": {k: f"/files/{v}" for k, v in i.files.items()}} for i in task.items],
            "answers": done,
            "position": position,
            "revision": revision,
        }

    @app.post("/api/answer")
    async def answer(request: Request) -> dict:
        given = await body(request, AnswerIn)
        if task.question == Question.ATTENTION:
            raise HTTPException(409, "this task asks for drawings (POST /api/drawing)")
        with writing:
            checked(given)
            return save(given.annotator, given.item, given.answer)

    @app.post("/api/undo")
    async def undo(request: Request) -> dict:
        given = await body(request, UndoIn)
        with writing:
            checked(given)
            if given.item not in answered.get(given.annotator, {}):
                raise HTTPException(409, f"{given.annotator} has no answer to item {given.item!r} to undo")
            return save(given.annotator, given.item)

    @app.post("/api/drawing")
    async def drawing(request: Request) -> dict:
        given = await body(request, DrawingIn)
        if task.question != Question.ATTENTION:
            raise HTTPException(409, "this task asks for yes / no / maybe (POST /api/answer)")
        mask = _mask(given.png, task.image_size)
        with writing:
            checked(given)
            # a new file per drawing, complete before the line that names it: an earlier,
            # acknowledged drawing is never overwritten, and no line points to half a file
            relative = f"drawings/{given.annotator}/{given.position:06d}-{uuid.uuid4().hex[:12]}.png"
            buffer = io.BytesIO()
            Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
            write_atomically(task.folder / relative, buffer.getvalue())
            return {**save(given.annotator, given.item, drawing=relative), "pixels": int(mask.sum())}

    @app.get("/files/{path:path}")
    def picture(path: str) -> FileResponse:
        root = task.folder.resolve()
        try:
            found = (root / path).resolve()
            served = found.is_relative_to(root) and found.suffix == ".png" and found.is_file()
        except (ValueError, OSError):  # a NUL byte, a name too long for the file system
            served = False
        if not served:
            raise HTTPException(404, "no such picture in this task")
        return FileResponse(found, media_type="image/png")

    return app


def _mask(data_url: str, size: tuple[int, int]) -> np.ndarray:
    """A painted canvas (PNG data URL, any size) as an ``(H, W)`` bool mask of the image's size:
    a pixel is in the region where at least half of the canvas area over it was painted."""
    try:
        raw = base64.b64decode(data_url.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(raw)) as image:
            if image.width * image.height > 4096 * 4096:  # checked from the header, before decoding
                raise HTTPException(413, "drawing larger than 4096 × 4096")
            if "A" not in image.getbands() and "transparency" not in image.info:
                raise HTTPException(422, f"png: a {image.mode} picture has no transparency to paint on; the page sends the painted canvas with its alpha channel")
            shrunk = image.convert("RGBA").getchannel("A").resize((size[1], size[0]), Image.Resampling.BOX)
    except (ValueError, OSError, Image.DecompressionBombError) as error:
        raise HTTPException(422, f"png: not a PNG image ({error})") from None
    return np.asarray(shrunk) >= 128


def address_of(host: str, port: int) -> str:
    """The page's address when served on ``host:port``."""
    return f"http://{host if ':' not in host else f'[{host}]'}:{port}"


def serve(task: Task, host: str, port: int, annotator: str | None = None, public: Sequence[str] = ()) -> None:
    """Serve ``task`` until interrupted (the caller holds its folder: :func:`~crayon_plugins.annotation.task.held`)."""
    import uvicorn

    uvicorn.run(create_app(task, address_of(host, port), annotator, public), host=host, port=port, log_level="warning")


def check_port(host: str, port: int) -> None:
    """Check that ``host:port`` can be listened on, as the server will (address reuse allowed, so a
    page stopped a moment ago does not hold it); :class:`OSError` otherwise."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
