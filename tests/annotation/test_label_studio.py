"""Label Studio round trip: tasks and labeling config out, the JSON export's answers back in."""

import json
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timedelta, timezone

import pytest

from crayon_plugins.annotation.answers import Record
from crayon_plugins.annotation.label_studio import ExportItem, labeling_config, read_export, write_tasks
from crayon_plugins.errors import CrayonError, DataError

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
    records = read_export(write(tmp_path / "export.json", EXPORT)).records
    assert [(r.item, r.question, r.answer, r.annotator, r.time) for r in records] == [
        ("bird-0", "maps", "maybe", "bob@lab.org", at("2021-03-09T22:10:00+00:00")),
        ("bird-0", "maps", "yes", "user-7", T0),
        ("bird-1", "maps", "no", "bob@lab.org", at("2021-03-09T22:30:00.500000+00:00")),
    ]
    assert all(r.time.utcoffset() == timedelta(0) for r in records)


def test_people_are_told_apart_by_full_e_mail_or_user_id_and_the_time_falls_back_to_created_at(tmp_path):
    lab_a = annotation(29, 101, {"id": 3, "email": "alice@lab-a.org"}, choices("yes", "sheet"), "2021-03-09T19:00:00Z")
    lab_b = annotation(28, 101, {"id": 4, "email": "alice@lab-b.org"}, choices("maybe", "sheet"), "2021-03-09T19:30:00Z")
    odd = annotation(30, 101, {"id": 9, "email": "j.o'neil+x@lab.org"}, choices("no", "sheet"), None)
    no_email = annotation(31, 101, {"id": 12}, choices("yes", "sheet"), "2021-03-09T21:00:00Z")
    bare = annotation(32, 101, 13, choices("no", "sheet"), "2021-03-09T21:30:00Z")  # what the server's export gives
    records = read_export(write(tmp_path / "export.json", [task(101, "neuron-5", [lab_a, lab_b, odd, no_email, bare])]), "neurons").records
    assert [(r.item, r.question, r.answer, r.annotator, r.time) for r in records] == [
        ("neuron-5", "neurons", "yes", "alice@lab-a.org", at("2021-03-09T19:00:00+00:00")),
        ("neuron-5", "neurons", "maybe", "alice@lab-b.org", at("2021-03-09T19:30:00+00:00")),
        ("neuron-5", "neurons", "no", "user-9", at("2021-03-09T20:00:00+00:00")),  # an e-mail that is no annotator name: the id
        ("neuron-5", "neurons", "yes", "user-12", at("2021-03-09T21:00:00+00:00")),
        ("neuron-5", "neurons", "no", "user-13", at("2021-03-09T21:30:00+00:00")),
    ]


def test_a_bad_choice_names_the_file_task_item_and_annotation(tmp_path):
    bad = [EXPORT[3], task(102, "bird-1", [annotation(17, 102, 7, choices("perhaps"), "2021-03-09T22:16:08Z")])]
    with pytest.raises(DataError, match=r"export\.json: task 1 \(item 'bird-1'\): annotation 17: choice 'perhaps' is not yes, no or maybe"):
        read_export(write(tmp_path / "export.json", bad))


def test_tasks_that_are_not_crayons_are_counted_and_left_out(tmp_path):
    synced = {"id": 5, "data": {"image": "/data/local-files/?d=ls/images/000001.png"}, "annotations": [annotation(40, 5, 7, choices("yes"), "2021-03-09T22:16:08Z")]}
    imported = read_export(write(tmp_path / "export.json", [*EXPORT, synced]))
    assert imported.foreign_tasks == 1 and len(imported.records) == 3


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such Label Studio export file"),
    ("folder", "is a folder, not a Label Studio export file"),
    (b"\xff\xfe[]", "not UTF-8 text"),
    ("[1", "not JSON"),
    ('{"tasks": []}', "not a Label Studio JSON export \\(a list of tasks\\) but a JSON dict"),
    ('[{"data": {"item": "a"}, "annotations": {"id": 1}}]', "task 0 \\(item 'a'\\): annotations is not a list"),
    ('[{"data": {"item": "a"}, "annotations": [7]}]', "task 0 \\(item 'a'\\): is not an object"),
    ('[{"data": {"item": "a"}, "annotations": [{"id": 2, "result": "yes"}]}]', "annotation 2: result is not a list of regions"),
    ('[{"data": {"item": "a"}, "annotations": [{"id": 2, "result": [{"type": "choices", "from_name": "answer", "value": {"choices": "yes"}}]}]}]', "value.choices is not a list"),
    ('[{"data": {"item": "a"}, "annotations": [{"id": 2, "result": [{"type": "choices", "from_name": "answer", "value": {"choices": ["yes"]}}], "updated_at": "2021-03-09T22:16:08Z", "completed_by": [1]}]}]', "has no completed_by user"),
])
def test_an_export_that_cannot_be_read_is_named_in_one_line(tmp_path, content, message):
    path = tmp_path / "export.json"
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(CrayonError, match=message):
        read_export(path)


def test_answers_submitted_with_the_prefilled_choice_unchanged_are_counted_and_can_be_left_out(tmp_path):
    kept = choices("no")
    prefilled = [{**kept[0], "origin": "prediction"}]
    export = [task(101, "bird-0", [annotation(17, 101, 7, prefilled, "2021-03-09T22:16:08Z"), annotation(18, 101, BOB, choices("yes"), "2021-03-09T22:17:08Z")])]
    imported = read_export(write(tmp_path / "export.json", export))
    assert imported.prefilled == {"user-7": 1} and len(imported.records) == 2
    dropped = read_export(tmp_path / "export.json", drop_prefilled=True)
    assert dropped.prefilled == {"user-7": 1} and [r.annotator for r in dropped.records] == ["bob@lab.org"]


def as_exported(tasks_path, records):
    """What Label Studio exports after the records' annotators answered the tasks in ``tasks_path``."""
    people = {"user-7": 7, "bob@lab.org": BOB}
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
    tasks_path, _ = write_tasks(tmp_path / "ls", "maps", items, "key-1")
    answers = ["yes", "no", "maybe"]
    records = [
        Record(item=f"bird-{i}", question="maps", answer=answers[(i + k) % 3], annotator=name, time=T0 + timedelta(minutes=7 * i - 20 * k, microseconds=11 * i), task="key-1")
        for k, name in enumerate(["user-7", "bob@lab.org"]) for i in range(6) if (name, i) != ("bob@lab.org", 4)
    ]
    back = read_export(write(tmp_path / "export.json", as_exported(tasks_path, records))).records
    assert len(back) == 11
    assert back == sorted(records, key=lambda r: (r.time, r.item))


def test_write_tasks_writes_the_items_in_order_with_predictions_and_a_matching_config(tmp_path):
    items = [ExportItem(f"bird-{i}", {"image": f"img/{i}.png", "overlay": f"maps/{i}.png"}, "bird" if i else "duck") for i in range(3)]
    tasks_path, config_path = write_tasks(tmp_path / "out", "maps", items, "key-1", {"bird-0": "no", "bird-2": "maybe", "elsewhere": "yes"}, "oracle-v2")
    assert (tasks_path, config_path) == (tmp_path / "out" / "tasks.json", tmp_path / "out" / "labeling-config.xml")
    tasks = json.loads(tasks_path.read_text())
    assert [t["data"] for t in tasks] == [{"item": f"bird-{i}", "task_key": "key-1", "image": f"img/{i}.png", "overlay": f"maps/{i}.png", "label": "bird" if i else "duck"} for i in range(3)]
    assert [[(p["model_version"], p["score"], p["result"]) for p in t.get("predictions", [])] for t in tasks] == [
        [("oracle-v2", 0.5 / 3, [{"from_name": "answer", "to_name": "overlay", "type": "choices", "value": {"choices": ["no"]}}])],
        [],
        [("oracle-v2", 2.5 / 3, [{"from_name": "answer", "to_name": "overlay", "type": "choices", "value": {"choices": ["maybe"]}}])],
    ]
    view = ElementTree.fromstring(config_path.read_text())
    (answer,) = [c for c in view.iter("Choices") if c.get("name") == "answer"]
    assert [c.get("value") for c in answer.iter("Choice")] == ["yes", "no", "maybe"]
    assert (answer.get("choice"), answer.get("required")) == ("single", "true")
    assert {i.get("name"): i.get("value") for i in view.iter("Image")} == {"image": "$image", "overlay": "$overlay"}
    assert answer.get("toName") == "overlay"


def test_neuron_tasks_show_the_sheet_and_ask_about_it(tmp_path):
    tasks_path, _ = write_tasks(tmp_path, "neurons", [ExportItem("neuron-3", {"sheet": "sheets/3.png"})], "key-2", {"neuron-3": "yes"})
    (t,) = json.loads(tasks_path.read_text())
    assert t["data"] == {"item": "neuron-3", "task_key": "key-2", "sheet": "sheets/3.png"}
    assert t["predictions"][0]["result"][0]["to_name"] == "sheet"
    view = ElementTree.fromstring(labeling_config("neurons"))
    assert [(i.get("name"), i.get("value")) for i in view.iter("Image")] == [("sheet", "$sheet")]
    (answer,) = view.iter("Choices")
    assert (answer.get("toName"), [c.get("value") for c in answer]) == ("sheet", ["yes", "no", "maybe"])
