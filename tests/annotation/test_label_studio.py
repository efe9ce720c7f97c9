"""Label Studio round trip: tasks and labeling config out, the JSON export's answers back in."""

import json
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timedelta, timezone

import pytest

from crayon_plugins.annotation.answers import Record
from crayon_plugins.annotation.label_studio import ExportItem, labeling_config, read_export, write_tasks
from crayon_plugins.errors import DataError

T0 = datetime(2021, 3, 9, 22, 16, 8, 728353, tzinfo=timezone.utc)
BOB = {"id": 8, "first_name": "Bob", "last_name": "", "email": "bob@lab.org"}


def choices(answer, to_name="overlay"):
    return [{"id": "Xk2h9", "type": "choices", "value": {"choices": [answer]}, "origin": "manual", "to_name": to_name, "from_name": "answer"}]


def annotation(id, task, completed_by, result, updated_at, cancelled=False):
    return {
        "id": id, "completed_by": completed_by, "result": result, "was_cancelled": cancelled, "ground_truth": False,
        "created_at": "2021-03-09T20:00:00.000000Z", "updated_at": updated_at, "lead_time": 12.5,
        "prediction": {}, "result_count": 0, "task": task, "project": 3, "parent_prediction": None, "parent_annotation": None,
    }


def task(id, item, annotations, predictions=()):
    return {
        "id": id, "data": {"item": item, "image": f"/data/local-files/?d=img/{item}.png", "overlay": f"/data/local-files/?d=maps/{item}.png", "label": "bird"},
        "annotations": annotations, "predictions": list(predictions), "meta": {}, "created_at": "2021-03-09T19:58:00.000000Z",
        "updated_at": "2021-03-09T22:20:00.000000Z", "inner_id": id - 100, "total_annotations": len(annotations),
        "cancelled_annotations": sum(a["was_cancelled"] for a in annotations), "total_predictions": len(predictions),
        "comment_count": 0, "unresolved_comment_count": 0, "last_comment_updated_at": None, "project": 3, "updated_by": 7, "file_upload": 2,
    }


EXPORT = [
    task(101, "bird-0", [
        annotation(17, 101, 7, choices("yes"), "2021-03-09T22:16:08.728353Z"),
        annotation(18, 101, BOB, choices("maybe"), "2021-03-09T22:10:00.000000Z"),
    ], predictions=[{"id": 5, "model_version": "oracle", "score": None, "result": choices("no"), "task": 101, "project": 3}]),
    task(102, "bird-1", [
        annotation(19, 102, BOB, choices("no"), "2021-03-09T22:30:00.5Z"),
        annotation(20, 102, 7, choices("yes"), "2021-03-09T22:40:00.000000Z", cancelled=True),  # cancelled: no answer
    ]),
    task(103, "bird-2", [annotation(21, 103, BOB, [], "2021-03-09T22:31:00.000000Z", cancelled=True)]),  # skipped
    task(104, "bird-3", []),
]


def write(path, tasks):
    path.write_text(json.dumps(tasks))
    return path


def at(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_an_export_gives_one_record_per_answered_annotation_sorted_by_time(tmp_path):
    records = read_export(write(tmp_path / "export.json", EXPORT))
    assert [(r.item, r.question, r.answer, r.annotator, r.time) for r in records] == [
        ("bird-0", "maps", "maybe", "bob", at("2021-03-09T22:10:00+00:00")),
        ("bird-0", "maps", "yes", "user-7", T0),
        ("bird-1", "maps", "no", "bob", at("2021-03-09T22:30:00.500000+00:00")),
    ]
    assert all(r.time.utcoffset() == timedelta(0) for r in records)


def test_annotator_names_are_sanitised_and_the_time_falls_back_to_created_at(tmp_path):
    odd = annotation(30, 101, {"id": 9, "email": "j.o'neil+x@lab.org"}, choices("no", "sheet"), None)
    no_email = annotation(31, 101, {"id": 12}, choices("yes", "sheet"), "2021-03-09T21:00:00Z")
    records = read_export(write(tmp_path / "export.json", [task(101, "neuron-5", [odd, no_email])]), "neurons")
    assert [(r.item, r.question, r.answer, r.annotator, r.time) for r in records] == [
        ("neuron-5", "neurons", "no", "j.o-neil-x", at("2021-03-09T20:00:00+00:00")),
        ("neuron-5", "neurons", "yes", "user-12", at("2021-03-09T21:00:00+00:00")),
    ]


def test_a_bad_choice_names_the_file_task_item_and_annotation(tmp_path):
    bad = [EXPORT[3], task(102, "bird-1", [annotation(17, 102, 7, choices("perhaps"), "2021-03-09T22:16:08Z")])]
    with pytest.raises(DataError, match=r"export\.json: task 1 \(item 'bird-1'\): annotation 17: choice 'perhaps' is not yes, no or maybe"):
        read_export(write(tmp_path / "export.json", bad))


def test_a_task_without_an_item_or_a_file_that_is_no_task_list_is_refused(tmp_path):
    no_item = [EXPORT[3], {"id": 5, "data": {"image": "a.png"}, "annotations": []}]
    with pytest.raises(DataError, match=r"export\.json: task 1: data\.item is missing"):
        read_export(write(tmp_path / "export.json", no_item))
    with pytest.raises(DataError, match=r"other\.json: not a Label Studio JSON export \(a list of tasks\) but a JSON dict"):
        read_export(write(tmp_path / "other.json", {"tasks": EXPORT}))


def as_exported(tasks_path, records):
    """What Label Studio exports after the records' annotators answered the tasks in ``tasks_path``."""
    people = {"user-7": 7, "bob": BOB}
    tasks = json.loads(tasks_path.read_text())
    exported = []
    for number, t in enumerate(tasks):
        mine = [r for r in records if r.item == t["data"]["item"]]
        annotations = [
            annotation(1000 + len(exported) * 10 + i, 200 + number, people[r.annotator], choices(r.answer), r.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
            for i, r in enumerate(mine)
        ]
        exported.append({**task(200 + number, t["data"]["item"], annotations), "data": t["data"]})
    return exported


def test_answers_survive_a_round_trip_through_label_studio(tmp_path):
    items = [ExportItem(f"bird-{i}", {"image": f"img/{i}.png", "overlay": f"maps/{i}.png"}, "bird") for i in range(6)]
    tasks_path, _ = write_tasks(tmp_path / "ls", "maps", items)
    answers = ["yes", "no", "maybe"]
    records = [
        Record(item=f"bird-{i}", question="maps", answer=answers[(i + k) % 3], annotator=name, time=T0 + timedelta(minutes=7 * i - 20 * k, microseconds=11 * i))
        for k, name in enumerate(["user-7", "bob"]) for i in range(6) if (name, i) != ("bob", 4)
    ]
    back = read_export(write(tmp_path / "export.json", as_exported(tasks_path, records)))
    assert len(back) == 11
    assert back == sorted(records, key=lambda r: (r.time, r.item))


def test_write_tasks_writes_the_items_in_order_with_predictions_and_a_matching_config(tmp_path):
    items = [ExportItem(f"bird-{i}", {"image": f"img/{i}.png", "overlay": f"maps/{i}.png"}, "bird" if i else "duck") for i in range(3)]
    tasks_path, config_path = write_tasks(tmp_path / "out", "maps", items, {"bird-0": "no", "bird-2": "maybe", "elsewhere": "yes"}, "oracle-v2")
    assert (tasks_path, config_path) == (tmp_path / "out" / "tasks.json", tmp_path / "out" / "labeling-config.xml")
    tasks = json.loads(tasks_path.read_text())
    assert [t["data"] for t in tasks] == [{"item": f"bird-{i}", "image": f"img/{i}.png", "overlay": f"maps/{i}.png", "label": "bird" if i else "duck"} for i in range(3)]
    assert [[(p["model_version"], p["result"]) for p in t.get("predictions", [])] for t in tasks] == [
        [("oracle-v2", [{"from_name": "answer", "to_name": "overlay", "type": "choices", "value": {"choices": ["no"]}}])],
        [],
        [("oracle-v2", [{"from_name": "answer", "to_name": "overlay", "type": "choices", "value": {"choices": ["maybe"]}}])],
    ]
    view = ElementTree.fromstring(config_path.read_text())
    (answer,) = [c for c in view.iter("Choices") if c.get("name") == "answer"]
    assert [c.get("value") for c in answer.iter("Choice")] == ["yes", "no", "maybe"]
    assert (answer.get("choice"), answer.get("required")) == ("single", "true")
    assert {i.get("name"): i.get("value") for i in view.iter("Image")} == {"image": "$image", "overlay": "$overlay"}
    assert answer.get("toName") == "overlay"


def test_neuron_tasks_show_the_sheet_and_ask_about_it(tmp_path):
    tasks_path, _ = write_tasks(tmp_path, "neurons", [ExportItem("neuron-3", {"sheet": "sheets/3.png"})], {"neuron-3": "yes"})
    (t,) = json.loads(tasks_path.read_text())
    assert t["data"] == {"item": "neuron-3", "sheet": "sheets/3.png"}
    assert t["predictions"][0]["result"][0]["to_name"] == "sheet"
    view = ElementTree.fromstring(labeling_config("neurons"))
    assert [(i.get("name"), i.get("value")) for i in view.iter("Image")] == [("sheet", "$sheet")]
    (answer,) = view.iter("Choices")
    assert (answer.get("toName"), [c.get("value") for c in answer]) == ("sheet", ["yes", "no", "maybe"])
