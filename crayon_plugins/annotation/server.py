"""The annotation page: a small FastAPI app over one task folder (:mod:`crayon_plugins.annotation.task`).

``GET /`` is the page; ``GET /api/task?annotator=NAME`` the items and that person's own answers
(never anyone else's); ``POST /api/answer``, ``/api/undo`` and ``/api/drawing`` append to the
answers file at once; ``GET /files/PATH`` serves the task's pictures and nothing outside the task
folder. Every request is validated: an unknown item, answer or annotator name, or a body over
:data:`MAX_BODY` bytes, is a 4xx and writes nothing.
"""

from __future__ import annotations

import base64
import io
import threading
from importlib.resources import files

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crayon_plugins.annotation import answers as answer_files
from crayon_plugins.annotation.records import Question
from crayon_plugins.annotation.task import Task

MAX_BODY = 2 << 20
"""Largest request body accepted (a painted mask as a PNG data URL fits well within it)."""

Name = Field(pattern=answer_files.ANNOTATOR_NAME.pattern)


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    annotator: str = Name
    item: str = Field(min_length=1, max_length=512)
    answer: str = Field(pattern="^(yes|no|maybe)$")


class UndoIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    annotator: str = Name


class DrawingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    annotator: str = Name
    item: str = Field(min_length=1, max_length=512)
    png: str = Field(pattern="^data:image/png;base64,")


def create_app(task: Task, annotator: str | None = None) -> FastAPI:
    """The page and API for ``task``; ``annotator``: the name the page starts with."""
    app = FastAPI(title="crayon annotate", docs_url=None, redoc_url=None, openapi_url=None)
    index = {item.item: position for position, item in enumerate(task.items)}
    page = files("crayon_plugins.annotation").joinpath("web/annotate.html").read_text()
    writing = threading.Lock()
    # each person's effective answers in the order given; read once, then kept in step with each append
    answered: dict[str, dict[str, answer_files.Record]] = {}
    for (name, item), found in answer_files.latest(r for r in answer_files.read_records(task.answers) if r.question == task.question).items():
        answered.setdefault(name, {})[item] = found

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

    def known(item: str) -> int:
        if item not in index:
            raise HTTPException(404, f"item {item!r} is not in this task")
        return index[item]

    def own_answers(name: str) -> list[answer_files.Record]:
        """``name``'s effective answers, in the order given (nobody else's)."""
        return list(answered.get(name, {}).values())

    def save(name: str, item: str, answer: str | None = None, drawing: str | None = None) -> None:
        """Append the answer to the file (flushed before returning), then to ``name``'s answers."""
        record = answer_files.Record(item=item, question=task.question, answer=answer, drawing=drawing, annotator=name, time=answer_files.now())
        answer_files.append(task.answers, record)
        mine = answered.setdefault(name, {})
        mine.pop(item, None)
        if answer is not None or drawing is not None:
            mine[item] = record

    @app.get("/", response_class=HTMLResponse)
    def show_page() -> str:
        return page

    @app.get("/api/task")
    def describe(annotator_name: str = Query(alias="annotator", pattern=answer_files.ANNOTATOR_NAME.pattern)) -> dict:
        mine = own_answers(annotator_name)
        done = {r.item: (r.answer if r.answer is not None else "drawn") for r in mine}
        position = next((i for i, item in enumerate(task.items) if item.item not in done), len(task.items))
        return {
            "question": task.question,
            "default_annotator": annotator,
            "image_size": task.image_size,
            "items": [{"item": i.item, "label": i.label, "prompt": task.prompt(i), "files": {k: f"/files/{v}" for k, v in i.files.items()}} for i in task.items],
            "answers": done,
            "position": position,
        }

    @app.post("/api/answer")
    async def answer(request: Request) -> dict:
        given = await body(request, AnswerIn)
        known(given.item)
        if task.question == Question.ATTENTION:
            raise HTTPException(409, "this task asks for drawings (POST /api/drawing)")
        with writing:
            save(given.annotator, given.item, given.answer)
        return {"answered": len(own_answers(given.annotator)), "total": len(task.items)}

    @app.post("/api/undo")
    async def undo(request: Request) -> dict:
        given = await body(request, UndoIn)
        with writing:
            mine = own_answers(given.annotator)
            if not mine:
                raise HTTPException(409, f"{given.annotator} has no answer to undo")
            save(given.annotator, mine[-1].item)
        return {"item": mine[-1].item, "answered": len(mine) - 1, "total": len(task.items)}

    @app.post("/api/drawing")
    async def drawing(request: Request) -> dict:
        given = await body(request, DrawingIn)
        position = known(given.item)
        if task.question != Question.ATTENTION:
            raise HTTPException(409, "this task asks for yes / no / maybe (POST /api/answer)")
        mask = _mask(given.png, task.image_size)
        relative = f"drawings/{given.annotator}/{position:06d}.png"
        with writing:
            (task.folder / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask.astype(np.uint8) * 255).save(task.folder / relative)
            save(given.annotator, given.item, drawing=relative)
        return {"answered": len(own_answers(given.annotator)), "total": len(task.items), "pixels": int(mask.sum())}

    @app.get("/files/{path:path}")
    def picture(path: str) -> FileResponse:
        root = task.folder.resolve()
        found = (root / path).resolve()
        if not found.is_relative_to(root) or found.suffix != ".png" or not found.is_file():
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
            shrunk = image.convert("RGBA").getchannel("A").resize((size[1], size[0]), Image.Resampling.BOX)
    except (ValueError, OSError, Image.DecompressionBombError) as error:
        raise HTTPException(422, f"png: not a PNG image ({error})") from None
    return np.asarray(shrunk) >= 128


def serve(task: Task, host: str, port: int, annotator: str | None = None) -> None:
    """Serve ``task`` until interrupted."""
    import uvicorn

    uvicorn.run(create_app(task, annotator), host=host, port=port, log_level="warning")

