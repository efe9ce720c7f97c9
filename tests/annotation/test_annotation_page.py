"""The annotation page: its task, its API (validation, isolation, undo, drawings, path traversal),
and a person's session in a real headless Chromium, whose answers then refine a model."""

import json
import shutil

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.metrics import cohen_kappa_score
from test_pipeline import TINY
from typer.testing import CliRunner

from crayon_plugins import CrayonError, Pipeline
from crayon_plugins.annotation.answers import Record, read_records
from crayon_plugins.annotation.budget import image_losses, neuron_taylor_scores
from crayon_plugins.annotation.records import Question
from crayon_plugins.annotation.server import MAX_BODY, create_app, own_hosts
from crayon_plugins.annotation.task import Task, held
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


def page(task: Task) -> TestClient:
    """The page of ``task`` as a test client reaches it (address http://testserver)."""
    return TestClient(create_app(task, "http://testserver"))


def write(client: TestClient, task: Task, path: str, annotator: str, item: str, **fields):
    """POST a write as the page makes it: the item, its position and the person's current revision."""
    revision = client.get("/api/task", params={"annotator": annotator}).json()["revision"]
    position = next((n for n, i in enumerate(task.items) if i.item == item), 0)
    return client.post(path, json={"annotator": annotator, "item": item, "position": position, "revision": revision, **fields})


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
        write(page(task), task, "/api/answer", "alice", task.items[0].item, answer="no")
        prepare_task(pipeline(cache, seed=1), "neurons", tmp_path / "neurons")  # another seed: another model


def test_answers_are_appended_per_person_and_nobody_sees_anothers(maps_task, tmp_path):
    task = fresh(maps_task, tmp_path)
    client = page(task)
    ids = [i.item for i in task.items]
    for item, answer in zip(ids[:3], ["yes", "no", "maybe"]):
        assert write(client, task, "/api/answer", "alice", item, answer=answer).status_code == 200
    alice = client.get("/api/task", params={"annotator": "alice"}).json()
    assert alice["answers"] == {ids[0]: "yes", ids[1]: "no", ids[2]: "maybe"} and alice["position"] == 3 and alice["revision"] == 3
    bob = client.get("/api/task", params={"annotator": "bob"}).json()
    assert bob["answers"] == {} and bob["position"] == 0 and len(bob["items"]) == 48 and bob["revision"] == 0
    undone = write(client, task, "/api/undo", "alice", ids[1]).json()  # the item on screen, not the last answered
    assert undone == {"item": ids[1], "answered": 2, "total": 48, "revision": 4}
    assert client.get("/api/task", params={"annotator": "alice"}).json()["position"] == 1  # a reload resumes at the undone item
    restarted = page(Task.read(task.folder)).get("/api/task", params={"annotator": "alice"}).json()
    assert restarted["answers"] == {ids[0]: "yes", ids[2]: "maybe"} and restarted["position"] == 1 and restarted["revision"] == 4  # so does a restarted server
    assert write(client, task, "/api/undo", "bob", ids[0]).status_code == 409
    lines = [json.loads(line) for line in task.answers.read_text().splitlines()]
    assert [(r["item"], r["answer"], r["annotator"]) for r in lines] == [(ids[0], "yes", "alice"), (ids[1], "no", "alice"), (ids[2], "maybe", "alice"), (ids[1], None, "alice")]
    assert {r["task"] for r in lines} == {task.key}  # every answer names the model and maps it judged


def test_a_write_lands_only_on_the_item_the_page_showed_and_a_stale_page_is_refused(maps_task, tmp_path):
    task = fresh(maps_task, tmp_path)
    client = page(task)
    ids = [i.item for i in task.items]
    shown = {"annotator": "alice", "item": ids[0], "position": 0, "revision": 0}
    assert client.post("/api/answer", json={**shown, "position": 1, "answer": "yes"}).status_code == 409  # position 1 shows another item
    assert client.post("/api/answer", json={**shown, "answer": "yes"}).json()["revision"] == 1
    second_tab = client.post("/api/answer", json={**shown, "item": ids[1], "position": 1, "answer": "no"})  # loaded before the first answer
    assert second_tab.status_code == 409 and "answered from another page" in second_tab.json()["detail"]
    assert client.post("/api/undo", json={**shown, "revision": 0}).status_code == 409
    assert [(r.item, r.answer) for r in read_records(task.answers)] == [(ids[0], "yes")]


def test_another_web_page_can_neither_answer_in_a_persons_name_nor_read_the_task(maps_task, tmp_path):
    task = fresh(maps_task, tmp_path)
    client = page(task)
    body = json.dumps({"annotator": "alice", "item": task.items[0].item, "position": 0, "revision": 0, "answer": "yes"})
    # a cross-site "simple" request (text/plain needs no preflight), then the same with a JSON type
    forged = client.post("/api/answer", content=body, headers={"Content-Type": "text/plain", "Origin": "http://evil.example"})
    assert forged.status_code == 403 and "not from 'http://evil.example'" in forged.json()["detail"]
    assert client.post("/api/answer", content=body, headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.post("/api/answer", content=body, headers={"Content-Type": "application/json", "Origin": "http://evil.example"}).status_code == 403
    # DNS rebinding: evil.example now resolves to this machine, so the browser sends Host: evil.example
    rebound = client.get("/api/task", params={"annotator": "alice"}, headers={"Host": "evil.example"})
    assert rebound.status_code == 421 and "items" not in rebound.json()
    assert client.post("/api/answer", content=body, headers={"Content-Type": "application/json", "Host": "evil.example", "Origin": "http://evil.example"}).status_code == 421
    assert not task.answers.exists()
    own = client.post("/api/answer", content=body, headers={"Content-Type": "application/json", "Origin": "http://testserver"})
    assert own.status_code == 200 and len(read_records(task.answers)) == 1


@pytest.mark.parametrize(("address", "accepted", "refused"), [
    ("http://127.0.0.1:8765", ["127.0.0.1:8765", "localhost:8765", "[::1]:8765"], ["127.0.0.1:8766", "evil.example:8765", "evil.example"]),
    ("http://[::1]:80", ["[::1]:80", "localhost:80"], ["[::2]:80"]),
    ("http://lab-box.example:9000", ["lab-box.example:9000"], ["localhost:9000", "lab-box.example"]),
])
def test_the_page_answers_to_its_own_address_only(address, accepted, refused):
    hosts = own_hosts(address)
    assert all(h in hosts for h in accepted) and not any(h in hosts for h in refused)


def test_a_page_behind_a_reverse_proxy_accepts_its_public_address_too(maps_task, tmp_path):
    task = fresh(maps_task, tmp_path)
    client = TestClient(create_app(task, "http://127.0.0.1:8765", public=["https://annotate.lab.org"]), base_url="http://127.0.0.1:8765")
    body = {"annotator": "alice", "item": task.items[0].item, "position": 0, "revision": 0, "answer": "yes"}
    assert client.get("/api/task", params={"annotator": "alice"}, headers={"Host": "annotate.lab.org"}).status_code == 200
    assert client.post("/api/answer", json=body, headers={"Host": "annotate.lab.org", "Origin": "https://annotate.lab.org"}).status_code == 200
    assert client.post("/api/answer", json={**body, "revision": 1}, headers={"Origin": "http://annotate.lab.org"}).status_code == 403  # not its scheme


def test_two_servers_cannot_hold_one_task_folder_and_the_error_names_the_holder(maps_task, tmp_path):
    task = fresh(maps_task, tmp_path)
    with held(task.folder, "http://127.0.0.1:8765"):
        with pytest.raises(CrayonError, match=r"already served by process \d+ on .* at http://127\.0\.0\.1:8765"):
            with held(task.folder, "http://127.0.0.1:8766"):
                pass
        result = CliRunner().invoke(app, ["annotate", "serve", "--task", str(task.folder), "--port", str(free_port())])  # before any training
        assert result.exit_code == 2 and "already served by process" in result.output
    with held(task.folder, "http://127.0.0.1:8766"):  # released when the first server stopped
        pass


@pytest.mark.parametrize(("options", "message"), [
    (["--port", "99999"], "--port: 99999 is not a port number"),
    (["--task", "/proc/crayon-task"], "/proc/crayon-task: cannot create the task folder"),
])
def test_serve_refuses_what_it_cannot_do_in_one_line(options, message):
    result = CliRunner().invoke(app, ["annotate", "serve", *options])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_page_stopped_a_moment_ago_does_not_keep_its_port(tmp_path):
    import socket

    from crayon_plugins.annotation.server import check_port

    with socket.socket() as served:  # a page that answered one request and stopped: its port in TIME-WAIT
        served.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        served.bind(("127.0.0.1", 0))
        served.listen()
        port = served.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = served.accept()
        accepted.close()  # the server closes first, so its side waits in TIME-WAIT
        client.close()
    check_port("127.0.0.1", port)


@pytest.mark.parametrize(("payload", "status"), [
    ({"annotator": "alice", "item": "train-99999", "answer": "yes"}, 404),
    ({"annotator": "alice", "item": None, "answer": "perhaps"}, 422),
    ({"annotator": "../alice", "item": None, "answer": "yes"}, 422),
    ({"annotator": "alice", "item": None, "answer": "yes", "extra": 1}, 422),
    ({"annotator": "alice", "item": None, "answer": "yes", "padding": "x" * (MAX_BODY + 1)}, 413),
])
def test_a_bad_request_is_refused_and_writes_nothing(maps_task, tmp_path, payload, status):
    task = fresh(maps_task, tmp_path)
    payload = {"position": 0, "revision": 0, **payload, "item": payload["item"] or task.items[0].item}
    response = page(task).post("/api/answer", json=payload)
    assert response.status_code == status
    assert not task.answers.exists()


@pytest.mark.parametrize("path", ["/files/images/a%00b.png", "/files/" + "x" * 5000 + ".png", "/files/../task.json", "/files/..%2F..%2Fetc%2Fpasswd", "/files/%2Fetc%2Fpasswd", "/files/images/../../../../etc/passwd", "/files/task.json", "/files/images/nothing.png"])
def test_only_the_tasks_own_pictures_are_served(maps_task, path):
    client = page(maps_task)
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
    client = page(task)
    item = task.items[4].item
    assert write(client, task, "/api/answer", "alice", item, answer="yes").status_code == 409
    assert write(client, task, "/api/drawing", "alice", item, png="data:image/png;base64,AAAA").status_code == 422
    opaque = io.BytesIO()
    Image.fromarray(canvas[..., :3]).save(opaque, format="PNG")  # no alpha channel: not "everything painted"
    refused = write(client, task, "/api/drawing", "alice", item, png="data:image/png;base64," + base64.b64encode(opaque.getvalue()).decode())
    assert refused.status_code == 422 and "no transparency" in refused.json()["detail"]
    found = write(client, task, "/api/drawing", "alice", item, png=png).json()
    assert found["pixels"] == 16 * 8
    first = read_records(task.answers)[-1]
    assert first.question == "attention" and first.answer is None
    with Image.open(task.folder / first.drawing) as mask:
        expected = np.zeros((32, 32), dtype=bool)
        expected[:16, :8] = True
        assert np.array_equal(np.asarray(mask) > 127, expected)
    canvas[:, :, 3] = 0
    assert write(client, task, "/api/drawing", "alice", item, png=png_of(canvas)).json()["pixels"] == 0  # a redraw of the same item
    second = read_records(task.answers)[-1]
    assert second.drawing != first.drawing  # a new file: the acknowledged first drawing is untouched
    with Image.open(task.folder / first.drawing) as mask:
        assert np.array_equal(np.asarray(mask) > 127, expected)
    assert not list((task.folder / "drawings").rglob("*.tmp"))


def png_of(canvas: np.ndarray) -> str:
    import base64
    import io

    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# --- a person's session in a real browser ---------------------------------------------------------


@pytest.fixture
def server(maps_task, tmp_path):
    task = fresh(maps_task, tmp_path)
    with serving(lambda address: create_app(task, address)) as address:
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
    wait_for(browser, lambda b: b.find_element("id", "saved").text == "all saved")
    browser.refresh()  # a reload resumes at the first unanswered item
    wait_for(browser, lambda b: _progress(b).startswith("10 / 48 answered") and b.find_element("id", "item-id").text == ids[10])
    for k, answer in enumerate(pattern[10:], start=10):  # mouse
        browser.find_element("id", answer).click()
        wait_for(browser, lambda b, k=k: _progress(b).startswith(f"{k + 1} / 48"))
    wait_for(browser, lambda b: b.find_element("id", "saved").text == "all saved")
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
    wait_for(browser, lambda b: b.find_element("id", "saved").text == "all saved")

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


def test_keys_pressed_with_no_delay_each_answer_the_item_they_were_pressed_on(server, browser):
    """Machine-speed typing (and key repeat): one line per press, each about the item shown when the
    key went down, in order; then undo acts on the item on screen."""
    from selenium.webdriver.common.action_chains import ActionChains

    task, address = server
    ids = [i.item for i in task.items]
    browser.get(f"{address}/?annotator=alice")
    wait_for(browser, lambda b: _progress(b).startswith("0 / 48 answered"))
    presses = "ynmyynnmmyynmnyymnny"
    ActionChains(browser).send_keys(presses).perform()  # one action: no pause between the keys
    wait_for(browser, lambda b: _progress(b).startswith("20 / 48") and b.find_element("id", "saved").text == "all saved")
    words = {"y": "yes", "n": "no", "m": "maybe"}
    assert [(r.item, r.answer) for r in read_records(task.answers)] == [(ids[k], words[key]) for k, key in enumerate(presses)]
    ActionChains(browser).send_keys("uu").perform()  # item 21 is unanswered: back to item 20, then undo it
    wait_for(browser, lambda b: _progress(b).startswith("19 / 48") and b.find_element("id", "saved").text == "all saved")
    assert browser.find_element("id", "item-id").text == ids[19]
    last = read_records(task.answers)[-1]
    assert (last.item, last.answer) == (ids[19], None)


def test_the_page_fits_a_360_pixel_wide_screen_with_its_scale_and_the_models_prediction(server, tmp_path):
    if why := missing_browser():
        pytest.skip(why)
    task, address = server
    with headless_chromium(360, 780) as browser:
        browser.get(f"{address}/?annotator=alice")
        wait_for(browser, lambda b: _progress(b).startswith("0 / 48 answered"))
        wait_for(browser, lambda b: b.execute_script("return [...document.images].every((i) => i.complete)"))
        overflow = browser.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        browser.save_screenshot(str(tmp_path / "page-360.png"))
        assert overflow <= 0, f"{overflow} px of horizontal scrolling at 360 px wide"
        for id_ in ("yes", "no", "maybe", "undo"):
            box = browser.find_element("id", id_).rect
            assert 0 <= box["x"] and box["x"] + box["width"] <= 360, id_
        assert browser.find_element("css selector", ".scale .bar").is_displayed()
        item = task.items[0]
        assert browser.find_element("id", "predicted").text.startswith(f"the model predicts “{item.predicted}”")


# --- whatever is thrown at it ---------------------------------------------------------------------


def _png_bytes(draw) -> bytes:
    import io

    mode = draw(st.sampled_from(["RGBA", "LA", "RGB", "L", "P", "I;16", "1"]))
    width, height = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    image = Image.new(mode, (width, height))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    cut = draw(st.one_of(st.just(len(data)), st.integers(0, len(data))))  # whole, or truncated anywhere
    return data[:cut]


@st.composite
def requests_at_the_page(draw, items):
    import base64

    path = draw(st.sampled_from(["/api/answer", "/api/undo", "/api/drawing"]))
    field = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=True), st.text(max_size=40), st.sampled_from(items), st.lists(st.integers(), max_size=3))
    body = {
        "annotator": draw(st.one_of(st.sampled_from(["alice", "bob"]), field)),
        "item": draw(st.one_of(st.sampled_from(items), field)),
        "position": draw(st.one_of(st.integers(0, len(items) + 2), field)),
        "revision": draw(st.one_of(st.integers(0, 3), field)),
        "answer": draw(st.one_of(st.sampled_from(["yes", "no", "maybe"]), field)),
        "png": "data:image/png;base64," + base64.b64encode(_png_bytes(draw)).decode(),
    }
    keep = draw(st.sets(st.sampled_from(sorted(body)), min_size=0, max_size=len(body)))
    body = {k: v for k, v in body.items() if k in keep} | draw(st.dictionaries(st.text(max_size=8), field, max_size=2))
    raw = draw(st.one_of(st.just(json.dumps(body, allow_nan=True).encode()), st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
    content_type = draw(st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", "multipart/form-data", ""]))
    return path, raw, content_type


@pytest.fixture(scope="module")
def pages(maps_task, tmp_path_factory):
    """The maps page and the drawing page, each on its own copy of the task."""
    folders = {}
    for question in ("maps", "attention"):
        copy = tmp_path_factory.mktemp(f"fuzz-{question}") / "task"
        shutil.copytree(maps_task.folder, copy)
        task = Task.read(copy)
        folders[question] = Task(copy, Question(question), task.key, task.image_size, task.items)
    return {question: (task, page(task)) for question, task in folders.items()}


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_no_request_body_or_upload_makes_the_page_fail_or_write_a_line_that_does_not_parse(pages, data):
    question = data.draw(st.sampled_from(["maps", "attention"]))
    task, client = pages[question]
    path, raw, content_type = data.draw(requests_at_the_page([i.item for i in task.items[:4]]))
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(path, content=raw, headers=headers)
    assert response.status_code < 500, response.text
    if task.answers.exists():
        for line in task.answers.read_bytes().splitlines():
            Record.model_validate_json(line)  # every line a whole record


def test_each_item_says_what_the_model_predicts_and_whether_its_map_is_empty(tmp_path):
    from crayon_plugins.annotation.task import write_task
    from crayon_plugins.testing.tiny import tiny_image_set

    train = tiny_image_set()
    maps = torch.rand(len(train), 4, 4, generator=torch.Generator().manual_seed(0))
    maps[1] = 0  # Grad-CAM found nothing to highlight
    predicted = 1 - train.labels
    task = write_task(tmp_path / "task", Question.MAPS, "key", train, [0, 1], maps=maps, predicted=predicted)
    shown = page(task).get("/api/task", params={"annotator": "alice"}).json()["items"]
    assert [(i["predicted"], i["empty_map"]) for i in shown] == [(train.class_names[int(predicted[0])], False), (train.class_names[int(predicted[1])], True)]
    assert (tmp_path / "task" / ".crayon-task").is_file()
