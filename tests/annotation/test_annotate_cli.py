"""``crayon annotate export / import / report / serve`` on the tiny configuration."""

import json
import socket
from datetime import datetime, timedelta, timezone

from test_annotation_page import CONFIG_TOML
from typer.testing import CliRunner

from crayon_plugins.annotation.answers import Record, append, read_records
from crayon_plugins.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def label_studio_export(tasks: list[dict], people: dict[int, str]) -> list[dict]:
    """What Label Studio exports after ``people`` (user id → email) each accepted every task's
    pre-annotation: the tasks with one annotation per person, timestamps one second apart."""
    start = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
    exported = []
    for number, task in enumerate(tasks):
        annotations = []
        for k, (user, email) in enumerate(people.items()):
            when = (start + timedelta(seconds=number * len(people) + k)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            result = [dict(r, id=f"r{number}-{k}", origin="prediction") for r in task["predictions"][0]["result"]]
            annotations.append({"id": 100 * number + k, "completed_by": {"id": user, "email": email}, "result": result, "was_cancelled": False,
                                "ground_truth": False, "created_at": when, "updated_at": when, "lead_time": 2.5, "task": number + 1})
        exported.append({"id": number + 1, "data": task["data"], "annotations": annotations, "predictions": task["predictions"], "project": 1})
    return exported


def test_label_studio_export_then_import_reproduces_the_answers_exactly(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG_TOML)
    out = tmp_path / "ls" / "maps"
    result = invoke("annotate", "export", out, "--config", config, "--predictions")
    assert result.exit_code == 0, result.output
    tasks = json.loads((out / "tasks.json").read_text())
    assert len(tasks) == 48 and tasks[0]["data"]["image"].startswith("/data/local-files/?d=maps/images/")
    assert (out / tasks[0]["data"]["overlay"].removeprefix("/data/local-files/?d=maps/")).is_file()
    assert "<Choices name=\"answer\"" in (out / "labeling-config.xml").read_text()
    oracle = {t["data"]["item"]: t["predictions"][0]["result"][0]["value"]["choices"][0] for t in tasks}
    assert set(oracle.values()) <= {"yes", "no", "maybe"} and len(set(oracle.values())) > 1  # otherwise the round trip proves little

    export = tmp_path / "export.json"
    export.write_text(json.dumps(label_studio_export(tasks, {7: "ana@lab.org", 9: "ben@lab.org"})))
    answers = tmp_path / "imported.jsonl"
    result = invoke("annotate", "import", export, "--out", answers)
    assert result.exit_code == 0, result.output
    assert "wrote 96 answers by 2 annotators (ana@lab.org, ben@lab.org)" in result.output
    assert "pre-selected choice unchanged: ana@lab.org 48, ben@lab.org 48; kept" in " ".join(result.output.split())
    imported = read_records(answers)
    assert [(r.item, r.answer, r.annotator) for r in imported] == [(item, oracle[item], who) for item in oracle for who in ("ana@lab.org", "ben@lab.org")]
    assert {r.task for r in imported} == {json.loads((out / "task.json").read_text())["key"]}  # the model the answers are about

    again = invoke("annotate", "import", export, "--out", answers)  # nothing already written is lost
    assert again.exit_code == 2 and "exists" in again.output and len(read_records(answers)) == 96


def test_the_report_of_the_people_prints_each_annotator_and_draws_the_answer_mix(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG_TOML)
    out = tmp_path / "ls"
    assert invoke("annotate", "export", out, "--config", config, "--predictions").exit_code == 0
    tasks = json.loads((out / "tasks.json").read_text())
    start = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
    answers = tmp_path / "answers.jsonl"
    for k, task in enumerate(tasks[:10]):
        oracle = task["predictions"][0]["result"][0]["value"]["choices"][0]
        append(answers, Record(item=task["data"]["item"], answer=oracle, annotator="ana", time=start + timedelta(seconds=4 * k)))  # agrees with the oracle
        append(answers, Record(item=task["data"]["item"], answer="maybe", annotator="ben", time=start + timedelta(seconds=6 * k)))
    figure = tmp_path / "mix.png"
    result = invoke("annotate", "report", answers, "--config", config, "--figure", figure)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in result.stdout.splitlines() if line.startswith("│ ana") or line.startswith("│ ben")}
    assert rows["ana"][0] == "10" and rows["ana"][4] == "4.0" and rows["ana"][6] == "1.00"  # 10 answers, 4 s each, κ 1 with the oracle
    assert rows["ben"][3] == "100.0%" and rows["ben"][4] == "6.0"
    assert figure.is_file()


def test_serve_refuses_a_bad_name_or_a_busy_port_before_any_work(tmp_path):
    result = invoke("annotate", "serve", "--annotator", "../root", "--task", tmp_path / "t")
    assert result.exit_code == 2 and "--annotator" in result.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = invoke("annotate", "serve", "--port", busy.getsockname()[1], "--task", tmp_path / "t")
    assert result.exit_code == 2 and "--port: cannot listen on 127.0.0.1" in result.output
    assert not (tmp_path / "t").exists()
    result = invoke("annotate", "serve", "--question", "pictures", "--task", tmp_path / "t", "--port", 0)
    assert result.exit_code == 2 and "'--question'" in result.output and "'pictures' is not one of 'maps', 'neurons', 'attention'" in result.output


def test_a_task_of_the_predicted_classes_maps_names_each_items_predicted_class(tmp_path):
    """``--maps-of predicted`` (what gradia's answers are about) shows each image with the map of the
    class the original model predicts and names that class; only maps take it."""
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG_TOML)
    labels, predicted = tmp_path / "labels", tmp_path / "predicted"
    assert invoke("annotate", "export", labels, "--config", config).exit_code == 0
    result = invoke("annotate", "export", predicted, "--config", config, "--maps-of", "predicted")
    assert result.exit_code == 0, result.output
    shown = {t["data"]["item"]: t["data"].get("label") for t in json.loads((labels / "tasks.json").read_text())}
    asked = {t["data"]["item"]: t["data"].get("label") for t in json.loads((predicted / "tasks.json").read_text())}
    assert shown.keys() == asked.keys() and None not in shown.values()
    differ = [item for item in shown if shown[item] != asked[item]]
    task = json.loads((predicted / "task.json").read_text())
    assert task["key"] != json.loads((labels / "task.json").read_text())["key"]
    assert [i["label"] for i in task["items"]] == list(asked.values())
    assert 0 < len(differ) < len(shown)  # the tiny model gets some images wrong, not all
    wrong = invoke("annotate", "export", tmp_path / "n", "--config", config, "--question", "neurons", "--maps-of", "predicted")
    assert wrong.exit_code == 2 and "--maps-of predicted: applies to --question maps" in wrong.output
    guessed = invoke("annotate", "export", tmp_path / "g", "--config", config, "--maps-of", "predicted", "--predictions")
    assert guessed.exit_code == 2 and "--predictions" in guessed.output


def test_import_refuses_what_it_cannot_read_or_write_in_one_line(tmp_path):
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "latin1.json").write_bytes(b"[\xe9]")
    (tmp_path / "ok.json").write_text("[]")
    for export, out, message in (
        (tmp_path / "missing.json", tmp_path / "a.jsonl", "missing.json: no such Label Studio export file"),
        (tmp_path / "folder.json", tmp_path / "a.jsonl", "folder.json: is a folder"),
        (tmp_path / "latin1.json", tmp_path / "a.jsonl", "latin1.json: the Label Studio export file is not UTF-8 text (byte 1)"),
        (tmp_path / "ok.json", "/proc/answers.jsonl", "--out"),
    ):
        result = invoke("annotate", "import", export, "--out", out)
        assert result.exit_code == 2 and message in " ".join(result.output.split()) and "Traceback" not in result.output, result.output
