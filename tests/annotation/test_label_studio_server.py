"""The Label Studio round trip against the real server, step by step as the README gives them:
export, a project from our labeling config, a local-files storage, the tasks imported, two people
answering through the API (a skip, a deleted and a changed annotation, a prefilled choice submitted
unchanged), a sync that adds tasks of the storage's other files, the JSON export, and
`crayon annotate import` giving back exactly the answers that stand; and drawings as brush masks."""

import json
import shlex
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_annotation_page import CONFIG_TOML
from typer.testing import CliRunner

from crayon_plugins.annotation.answers import read_records
from crayon_plugins.annotation.brush import encode
from crayon_plugins.cli import app
from crayon_plugins.testing.label_studio import label_studio, missing_label_studio

STEPS = {
    "export": "crayon annotate export ls/maps --config run.toml --predictions",
    "serve files": "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=$PWD/ls label-studio start",
    "storage": "absolute path `$PWD/ls/maps`, file filter\n   regex `.*\\.png`, *Treat every bucket object as a source file* and *Scan all sub-folders* on",
    "import": "crayon annotate import export.json --out ls/maps/answers.jsonl",
}
"""The README's steps that this test performs (the server's settings, the storage's fields, the two commands)."""


def test_the_readmes_steps_are_the_ones_this_test_takes():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Label Studio, step by step", 1)[1].split("\n## ", 1)[0]
    for name, step in STEPS.items():
        assert step in section, name


def crayon(*args):
    if len(args) == 1:  # one of the README's command lines
        args = shlex.split(args[0])[1:]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def choice(answer, origin="manual"):
    return [{"from_name": "answer", "to_name": "overlay", "type": "choices", "value": {"choices": [answer]}, "origin": origin}]


def annotate(client, task_id, result, cancelled=False):
    response = client.post(f"/api/tasks/{task_id}/annotations/", json={"result": result, "was_cancelled": cancelled})
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.mark.slow(minutes=4)
def test_label_studio_round_trip_on_the_real_server(tmp_path, monkeypatch):
    if why := missing_label_studio():
        pytest.skip(why)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text(CONFIG_TOML)
    # 1. the task for Label Studio
    crayon(STEPS["export"])
    crayon("annotate", "export", "ls/attention", "--config", "run.toml", "--question", "attention")
    # 2. Label Studio serving local files from ls/
    with label_studio(tmp_path / "ls") as server, server.client() as admin:  # with STEPS["serve files"]
        ana, ben = server.add_user("ana@lab-a.org"), server.add_user("ana@lab-b.org")  # same local part, two people
        ids = {u["email"]: f"user-{u['id']}" for u in admin.get("/api/users/").json()}  # who the plain export names
        # 3. a project from our labeling config
        project = admin.post("/api/projects", json={"title": "maps", "label_config": (tmp_path / "ls/maps/labeling-config.xml").read_text()}).json()
        # 4. a local-files storage on the export's folder
        storage = admin.post("/api/storages/localfiles", json={
            "project": project["id"], "title": "pictures", "path": str(tmp_path / "ls/maps"), "regex_filter": r".*\.png", "use_blob_urls": True, "recursive_scan": True,
        })
        assert storage.status_code == 201, storage.text
        # 5. the tasks imported
        imported = admin.post(f"/api/projects/{project['id']}/import", json=json.loads((tmp_path / "ls/maps/tasks.json").read_text()))
        assert imported.status_code == 201 and imported.json()["task_count"] == 48, imported.text
        tasks = admin.get("/api/tasks", params={"project": project["id"], "page_size": 100}).json()["tasks"]
        by_item = {t["data"]["item"]: t for t in tasks}
        picture = admin.get(tasks[0]["data"]["overlay"])
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"  # the pictures are served
        predictions = {t["task"]: t for t in admin.get("/api/predictions/", params={"project": project["id"]}).json()}
        assert len(predictions) == 48 and all(0 < p["score"] < 1 for p in predictions.values())
        # 6. people answer
        order = json.loads((tmp_path / "ls/maps/tasks.json").read_text())
        items = [t["data"]["item"] for t in order]
        expected = {}
        with server.client(ana) as a, server.client(ben) as b:
            for k, item in enumerate(items[:6]):
                annotate(a, by_item[item]["id"], choice(("yes", "no", "maybe")[k % 3]))
                expected[("ana@lab-a.org", item)] = ("yes", "no", "maybe")[k % 3]
            annotate(a, by_item[items[6]]["id"], [], cancelled=True)  # a skip
            gone = annotate(b, by_item[items[0]]["id"], choice("no"))
            assert b.delete(f"/api/annotations/{gone}/").status_code == 204  # a deleted annotation
            changed = annotate(b, by_item[items[1]]["id"], choice("yes"))
            assert b.patch(f"/api/annotations/{changed}/", json={"result": choice("maybe")}).status_code == 200  # a changed one
            expected[("ana@lab-b.org", items[1])] = "maybe"
            prefilled = predictions[by_item[items[2]]["id"]]["result"][0]["value"]["choices"][0]
            annotate(b, by_item[items[2]]["id"], choice(prefilled, origin="prediction"))  # the suggestion, submitted as it was
            expected[("ana@lab-b.org", items[2])] = prefilled
        # 7. Sync on the storage: tasks of the folder's other files, without our item id
        synced = admin.post(f"/api/storages/localfiles/{storage.json()['id']}/sync")
        assert synced.status_code == 200, synced.text
        deadline = time.monotonic() + 120
        while (state := admin.get(f"/api/storages/localfiles/{storage.json()['id']}").json())["status"] not in ("completed", "failed"):  # it runs in the background
            assert time.monotonic() < deadline, state
            time.sleep(1)
        assert state["status"] == "completed" and admin.get(f"/api/projects/{project['id']}").json()["task_number"] == 48 + 2 * 48, state
        # 8. the JSON export
        export = admin.get(f"/api/projects/{project['id']}/export", params={"exportType": "JSON", "download_all_tasks": "true"})
        assert export.status_code == 200
        (tmp_path / "export.json").write_bytes(export.content)
        foreign = sum("item" not in t["data"] for t in export.json())
        # the same export with the people expanded (an export snapshot asked for the users' details)
        snapshot = admin.post(f"/api/projects/{project['id']}/exports", json={"serialization_options": {"annotations__completed_by": {"only_id": False}}})
        assert snapshot.status_code == 201, snapshot.text
        detailed = admin.get(f"/api/projects/{project['id']}/exports/{snapshot.json()['id']}/download", params={"exportType": "JSON"})
        assert detailed.status_code == 200, detailed.text
        (tmp_path / "export-with-emails.json").write_bytes(detailed.content)

        # the drawing question: one person paints two regions
        drawing = admin.post("/api/projects", json={"title": "attention", "label_config": (tmp_path / "ls/attention/labeling-config.xml").read_text()}).json()
        admin.post(f"/api/projects/{drawing['id']}/import", json=json.loads((tmp_path / "ls/attention/tasks.json").read_text()))
        painted = {}
        with server.client(ana) as a:
            for k, t in enumerate(admin.get("/api/tasks", params={"project": drawing["id"]}).json()["tasks"][:2]):
                mask = np.zeros((32, 32), dtype=bool)
                mask[4 * k : 20, 8 : 8 + 10 * (k + 1)] = True
                painted[t["data"]["item"]] = mask
                region = {"from_name": "region", "to_name": "image", "type": "brushlabels", "original_width": 32, "original_height": 32, "image_rotation": 0,
                          "value": {"format": "rle", "rle": encode(mask), "brushlabels": ["look here"]}}
                annotate(a, t["id"], [region])
        (tmp_path / "drawings.json").write_bytes(admin.get(f"/api/projects/{drawing['id']}/export", params={"exportType": "JSON"}).content)

    # 9. crayon annotate import
    said = crayon(STEPS["import"])
    records = read_records(tmp_path / "ls/maps/answers.jsonl")
    assert {(r.annotator, r.item): r.answer for r in records} == {(ids[who], item): answer for (who, item), answer in expected.items()} and len(records) == len(expected)
    assert sorted(records, key=lambda r: r.time) == records and all(isinstance(r.time, datetime) for r in records)
    key = json.loads((tmp_path / "ls/maps/task.json").read_text())["key"]
    assert {r.task for r in records} == {key}
    assert foreign > 0 and f"left out {foreign} task(s) without data.item" in said
    assert f"pre-selected choice unchanged: {ids['ana@lab-b.org']} 1; kept" in said
    assert f"wrote 8 answers by 2 annotators ({ids['ana@lab-a.org']}, {ids['ana@lab-b.org']})" in said
    crayon("annotate", "import", "export-with-emails.json", "--out", "emails.jsonl")
    assert {(r.annotator, r.item): r.answer for r in read_records(tmp_path / "emails.jsonl")} == expected  # full e-mails: two people

    crayon("annotate", "import", "drawings.json", "--out", "ls/attention/answers.jsonl", "--question", "attention")
    drawn = read_records(tmp_path / "ls/attention/answers.jsonl")
    assert {r.item for r in drawn} == set(painted)
    for r in drawn:
        with Image.open(tmp_path / "ls/attention" / r.drawing) as mask:
            assert np.array_equal(np.asarray(mask) > 127, painted[r.item])
