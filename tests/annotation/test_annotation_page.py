"""The annotation page: its task, its API (validation, isolation, undo, drawings, path traversal),
and a person's session in a real headless Chromium, whose answers then refine a model."""

import json
import shutil

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from sklearn.metrics import cohen_kappa_score
from test_pipeline import TINY
from typer.testing import CliRunner

from crayon_plugins import CrayonError, Pipeline
from crayon_plugins.annotation.answers import read_records
from crayon_plugins.annotation.budget import image_losses, neuron_taylor_scores
from crayon_plugins.annotation.server import MAX_BODY, create_app
from crayon_plugins.annotation.task import Task
from crayon_plugins.cli import app
from crayon_plugins.config import RunConfig
from crayon_plugins.run.cache import ArtefactCache
from crayon_plugins.run.stages.annotate import prepare_task
from crayon_plugins.run.stages.explain import concepts, shared_features
from crayon_plugins.run.stages.load import load
from crayon_plugins.run.stages.original import original_model
from crayon_plugins.testing.browser import headless_chromium, missing_browser, serving, wait_for

CONFIG = {**TINY, "budget": {"fraction": 0.25, "selection": "loss-guided"}, "refiners": ["crayon-attention"]}
CONFIG_TOML = """\
[dataset]
name = "spurious-bars"
n_train = 192
n_test = 64
image_size = 32
[backbone]
model = "resnet10t"
[training]
epochs = 1
batch_size = 64
[concepts]
k = 10
[budget]
fraction = 0.25
selection = "loss-guided"
[refiner.crayon-attention]
epochs = 1
"""
"""``CONFIG`` as a configuration file, for the command line."""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return ArtefactCache(tmp_path_factory.mktemp("page-cache"))


def pipeline(cache, **overrides):
    return Pipeline.from_config(RunConfig.model_validate({**CONFIG, **overrides}), cache=cache)


@pytest.fixture(scope="module")
def maps_task(cache, tmp_path_factory):
    return prepare_task(pipeline(cache), "maps", tmp_path_factory.mktemp("task") / "maps")


def fresh(task: Task, tmp_path, question=None) -> Task:
    """A copy of ``task`` in its own folder, without answers."""
    shutil.copytree(task.folder, tmp_path / "task")
    copy = Task.read(tmp_path / "task")
    return Task(copy.folder, question or copy.question, copy.key, copy.image_size, copy.items)


def test_the_task_holds_the_budgets_items_most_useful_first(maps_task, cache):
    p = pipeline(cache)
    train = load(p, "train")
    model = original_model(p, train).model
    losses = image_losses(model, shared_features(p, model, train, "train"), train.labels)
    expected = [train.ids[i] for i in torch.sort(losses, descending=True, stable=True).indices[:48].tolist()]
    assert [i.item for i in maps_task.items] == expected  # 25 % of 192, highest loss first
    first = maps_task.items[0]
    assert first.label in train.class_names and first.files.keys() == {"image", "overlay"}
    with Image.open(maps_task.folder / first.files["overlay"]) as overlay:
        assert overlay.size == (32, 32)
    assert Task.read(maps_task.folder) == maps_task


def test_the_neuron_task_shows_concept_sheets_of_the_neurons_pruning_would_change_most_first(cache, tmp_path):
    p = pipeline(cache)
    train = load(p, "train")
    model = original_model(p, train).model
    found = concepts(p, model, train)
    task = prepare_task(p, "neurons", tmp_path / "neurons")
    scores = neuron_taylor_scores(model, shared_features(p, model, train, "train"), train.labels)
    ranked = torch.sort(scores, descending=True, stable=True).indices[: len(task.items)].tolist()
    assert len(task.items) == round(0.25 * len(found)) and [i.item for i in task.items] == [found.neuron_ids[n] for n in ranked]
    assert all((task.folder / i.files["sheet"]).is_file() for i in task.items)
    with pytest.raises(CrayonError, match="holds answers about another model's neurons"):
        TestClient(create_app(task)).post("/api/answer", json={"annotator": "alice", "item": task.items[0].item, "answer": "no"})
        prepare_task(pipeline(cache, seed=1), "neurons", tmp_path / "neurons")  # another seed: another model


def test_answers_are_appended_per_person_and_nobody_sees_anothers(maps_task, tmp_path):
    task = fresh(maps_task, tmp_path)
    client = TestClient(create_app(task))
    ids = [i.item for i in task.items]
    for item, answer in zip(ids[:3], ["yes", "no", "maybe"]):
        assert client.post("/api/answer", json={"annotator": "alice", "item": item, "answer": answer}).status_code == 200
    alice = client.get("/api/task", params={"annotator": "alice"}).json()
    assert alice["answers"] == {ids[0]: "yes", ids[1]: "no", ids[2]: "maybe"} and alice["position"] == 3
    bob = client.get("/api/task", params={"annotator": "bob"}).json()
    assert bob["answers"] == {} and bob["position"] == 0 and len(bob["items"]) == 48
    undone = client.post("/api/undo", json={"annotator": "alice"}).json()
    assert undone == {"item": ids[2], "answered": 2, "total": 48}
    assert client.get("/api/task", params={"annotator": "alice"}).json()["position"] == 2  # a reload resumes at the undone item
    restarted = TestClient(create_app(Task.read(task.folder))).get("/api/task", params={"annotator": "alice"}).json()
    assert restarted["answers"] == {ids[0]: "yes", ids[1]: "no"} and restarted["position"] == 2  # so does a restarted server
    assert client.post("/api/undo", json={"annotator": "bob"}).status_code == 409
    lines = [json.loads(line) for line in task.answers.read_text().splitlines()]
    assert [(r["item"], r["answer"], r["annotator"]) for r in lines] == [(ids[0], "yes", "alice"), (ids[1], "no", "alice"), (ids[2], "maybe", "alice"), (ids[2], None, "alice")]


@pytest.mark.parametrize(("payload", "status"), [
    ({"annotator": "alice", "item": "train-99999", "answer": "yes"}, 404),
    ({"annotator": "alice", "item": None, "answer": "perhaps"}, 422),
    ({"annotator": "../alice", "item": None, "answer": "yes"}, 422),
    ({"annotator": "alice", "item": None, "answer": "yes", "extra": 1}, 422),
    ({"annotator": "alice", "item": None, "answer": "yes", "padding": "x" * (MAX_BODY + 1)}, 413),
])
def test_a_bad_request_is_refused_and_writes_nothing(maps_task, tmp_path, payload, status):
    task = fresh(maps_task, tmp_path)
    payload = {**payload, "item": payload["item"] or task.items[0].item}
    response = TestClient(create_app(task)).post("/api/answer", json=payload)
    assert response.status_code == status
    assert not task.answers.exists()


@pytest.mark.parametrize("path", ["/files/../task.json", "/files/..%2F..%2Fetc%2Fpasswd", "/files/%2Fetc%2Fpasswd", "/files/images/../../../../etc/passwd", "/files/task.json", "/files/images/nothing.png"])
def test_only_the_tasks_own_pictures_are_served(maps_task, path):
    client = TestClient(create_app(maps_task))
    assert client.get(path).status_code == 404
    picture = client.get("/files/" + maps_task.items[0].files["image"])
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"


def test_a_painted_region_is_saved_as_a_mask_of_the_images_size(maps_task, tmp_path):
    import base64
    import io

    task = fresh(maps_task, tmp_path, question="attention")
    canvas = np.zeros((360, 360, 4), dtype=np.uint8)
    canvas[:180, :90, 3] = 140  # the top-left eighth, half-transparent paint
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    png = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    client = TestClient(create_app(task))
    item = task.items[4].item
    assert client.post("/api/answer", json={"annotator": "alice", "item": item, "answer": "yes"}).status_code == 409
    assert client.post("/api/drawing", json={"annotator": "alice", "item": item, "png": "data:image/png;base64,AAAA"}).status_code == 422
    found = client.post("/api/drawing", json={"annotator": "alice", "item": item, "png": png}).json()
    assert found["pixels"] == 16 * 8
    record = read_records(task.answers)[-1]
    assert record.question == "attention" and record.answer is None
    with Image.open(task.folder / record.drawing) as mask:
        expected = np.zeros((32, 32), dtype=bool)
        expected[:16, :8] = True
        assert np.array_equal(np.asarray(mask) > 127, expected)


# --- a person's session in a real browser ---------------------------------------------------------


@pytest.fixture
def server(maps_task, tmp_path):
    task = fresh(maps_task, tmp_path)
    with serving(create_app(task)) as address:
        yield task, address


@pytest.fixture
def browser():
    if why := missing_browser():
        pytest.skip(why)
    with headless_chromium() as driver:
        yield driver


def _progress(browser) -> str:
    return browser.find_element("id", "progress").text


@pytest.mark.slow
def test_a_person_answers_twenty_items_by_keyboard_and_mouse_and_the_answers_refine_a_model(server, browser, cache, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    task, address = server
    ids = [i.item for i in task.items]
    pattern = ["yes", "no", "maybe", "yes", "no"] * 4
    browser.get(f"{address}/?annotator=alice")
    wait_for(browser, lambda b: _progress(b).startswith("0 / 48 answered"))
    for k, answer in enumerate(pattern[:10]):  # keyboard: y / n / m
        ActionChains(browser).send_keys(answer[0]).perform()
        wait_for(browser, lambda b, k=k: _progress(b).startswith(f"{k + 1} / 48"))
    browser.refresh()  # a reload resumes at the first unanswered item
    wait_for(browser, lambda b: _progress(b).startswith("10 / 48 answered") and b.find_element("id", "item-id").text == ids[10])
    for k, answer in enumerate(pattern[10:], start=10):  # mouse
        browser.find_element("id", answer).click()
        wait_for(browser, lambda b, k=k: _progress(b).startswith(f"{k + 1} / 48"))
    browser.save_screenshot(str(tmp_path / "page.png"))

    records = read_records(task.answers)
    assert [(r.item, r.answer, r.annotator) for r in records] == list(zip(ids[:20], pattern, ["alice"] * 20))

    browser.get(f"{address}/?annotator=bob")  # a second person sees none of alice's answers
    wait_for(browser, lambda b: _progress(b).startswith("0 / 48 answered") and b.find_element("id", "item-id").text == ids[0])
    assert not browser.find_elements("css selector", "button.answer.chosen")
    bob = ["yes", "yes", "no", "maybe", "no", "yes", "yes", "maybe", "no", "yes", "no", "no"]
    for k, answer in enumerate(bob):
        ActionChains(browser).send_keys(answer[0]).perform()
        wait_for(browser, lambda b, k=k: _progress(b).startswith(f"{k + 1} / 48"))

    # crayon run on those answers: the human source, two panel members
    config = tmp_path / "human.toml"
    config.write_text(CONFIG_TOML + f'[annotator]\nname = "human"\nanswers = "{task.answers}"\n')
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    stats = written["annotation_stats"]["maps"]
    assert stats["annotated"] == 20
    kappa = cohen_kappa_score([pattern[i] for i in range(12)], bob, labels=["no", "yes", "maybe"])
    assert stats["cohen_kappa"] == pytest.approx(kappa, abs=1e-12)
    assert written["rows"][1]["method"] == "crayon-attention"
