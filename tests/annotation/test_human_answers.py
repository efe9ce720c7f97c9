"""People's answers: the answers file, the authors' published lists, and the ``human`` source."""

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from test_pipeline import TINY

from crayon_plugins import ConfigError, Pipeline
from crayon_plugins.annotation.answers import Record, append, latest, read_answers, read_published, read_records
from crayon_plugins.annotation.records import Answer, MapsToJudge, Question
from crayon_plugins.annotation.task import write_task
from crayon_plugins.config import RunConfig
from crayon_plugins.errors import DataError
from crayon_plugins.factory import create
from crayon_plugins.run.cache import ArtefactCache
from crayon_plugins.run.stages.annotate import MapsOf, prepare_task
from crayon_plugins.run.stages.explain import predicted_maps, shared_features
from crayon_plugins.run.stages.load import load
from crayon_plugins.run.stages.original import original_model
from crayon_plugins.testing import check_annotation_source
from crayon_plugins.testing.contracts import _questions
from crayon_plugins.testing.tiny import tiny_answer_files, tiny_image_set, tiny_model

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)


def record(item, answer, annotator="alice", seconds=0, question="maps", **extra):
    return Record(item=item, question=question, answer=answer, annotator=annotator, time=T0 + timedelta(seconds=seconds), **extra)


def write(path, *records):
    for r in records:
        append(path, r)
    return path


def human(**params):
    return create("annotation_source", "human", params)


def test_an_answers_file_is_one_json_line_per_click_in_the_documented_fields(tmp_path):
    path = write(tmp_path / "answers.jsonl", record("tiny-000", "yes", task="5f1c"), record("tiny-000", None, seconds=1, task="5f1c"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {"item": "tiny-000", "question": "maps", "answer": "yes", "annotator": "alice", "time": "2026-11-24T09:00:00Z", "task": "5f1c"},
        {"item": "tiny-000", "question": "maps", "answer": None, "annotator": "alice", "time": "2026-11-24T09:00:01Z", "task": "5f1c"},
    ]


def test_a_later_answer_replaces_an_earlier_one_and_an_undone_answer_is_unanswered(tmp_path):
    path = write(
        tmp_path / "a.jsonl",
        record("tiny-000", "yes"), record("tiny-001", "no"), record("tiny-000", "maybe", seconds=2),
        record("tiny-002", "yes", seconds=3), record("tiny-002", None, seconds=4), record("tiny-001", "yes", "bob", seconds=5),
    )
    found = read_answers(path, [f"tiny-{i:03d}" for i in range(24)])
    assert [(r.annotator, r.item, r.answer) for r in found] == [("alice", "tiny-001", "no"), ("alice", "tiny-000", "maybe"), ("bob", "tiny-001", "yes")]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 4), st.sampled_from(["yes", "no", "maybe", None])), max_size=30))
def test_reading_back_keeps_each_persons_last_word_on_each_item(clicks):
    records = [record(f"tiny-{i:03d}", answer, who, seconds=n) for n, (who, i, answer) in enumerate(clicks)]
    expected = {}
    for who, i, answer in clicks:
        expected[(who, f"tiny-{i:03d}")] = answer
    assert {k: r.answer for k, r in latest(records).items()} == {k: v for k, v in expected.items() if v is not None}


def test_an_unknown_item_or_a_bad_line_names_the_file_and_line(tmp_path):
    path = write(tmp_path / "a.jsonl", record("tiny-000", "yes"), record("tiny-099", "no"))
    with pytest.raises(DataError, match=r"a\.jsonl: line 2 answers item 'tiny-099', which is not in the split"):
        read_answers(path, [f"tiny-{i:03d}" for i in range(24)])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"item": "tiny-000", "answer": "yes", "annotator": "alice", "time": "2026-11-24T09:00:00Z"}\n{"item": "tiny-001", "answer": "sure", "annotator": "alice", "time": "2026-11-24T09:00:00Z"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: answer: String should match pattern"):
        read_records(bad)


def test_an_answer_after_a_hand_edit_without_a_final_newline_gets_its_own_line(tmp_path):
    path = write(tmp_path / "a.jsonl", record("tiny-000", "yes"))
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # an editor that drops the final newline
    append(path, record("tiny-001", "no", seconds=1))
    assert [(r.item, r.answer) for r in read_records(path)] == [("tiny-000", "yes"), ("tiny-001", "no")]
    assert not path.with_name("a.jsonl.damaged").exists()


def test_what_a_failed_write_left_is_set_aside_and_every_acknowledged_answer_stays_readable(tmp_path, capsys):
    path = write(tmp_path / "a.jsonl", record("tiny-000", "yes"), record("tiny-001", "no", seconds=1))
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"item":"tiny-002","question":"ma')  # the disk filled mid-line
    assert [r.item for r in read_records(path)] == ["tiny-000", "tiny-001"]  # the server still starts
    append(path, record("tiny-003", "maybe", seconds=3))
    assert [(r.item, r.answer) for r in read_records(path)] == [("tiny-000", "yes"), ("tiny-001", "no"), ("tiny-003", "maybe")]
    assert path.with_name("a.jsonl.damaged").read_bytes() == b'{"item":"tiny-002","question":"ma\n'
    assert "cut off (33 bytes" in capsys.readouterr().err


def test_a_line_glued_by_an_older_version_gives_back_the_acknowledged_answer_after_the_fragment(tmp_path, capsys):
    path = tmp_path / "a.jsonl"
    glued = record("tiny-001", "no").model_dump_json(exclude={"drawing"})
    path.write_text('{"item":"tiny-000","quest' + glued + "\n")
    assert [(r.item, r.answer) for r in read_records(path)] == [("tiny-001", "no")]
    assert "a.jsonl:1: read the answer that follows the remains of an unfinished write" in capsys.readouterr().err


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 3), st.data())
def test_wherever_a_write_stopped_the_answers_before_and_after_it_are_all_read_back(kept, data):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.jsonl"
        before = [record(f"tiny-{i:03d}", "yes", seconds=i) for i in range(kept)]
        write(path, *before)
        unfinished = (record("tiny-010", "no", "bob").model_dump_json(exclude={"drawing"}) + "\n").encode()
        cut = data.draw(st.integers(0, len(unfinished)), label="bytes of the failed write that reached the disk")
        with open(path, "ab") as file:
            file.write(unfinished[:cut])
        after = [record(f"tiny-{i:03d}", "maybe", "carol", seconds=i) for i in range(20, 22)]
        write(path, *after)
        finished = [record("tiny-010", "no", "bob")] if cut >= len(unfinished) - 1 else []
        assert read_records(path) == before + finished + after


def test_published_lists_are_read_in_split_order(tmp_path):
    ids = ("x-0", "x-1", "x-2")
    maps = tmp_path / "waterbirds_gradcam.json"
    maps.write_text(json.dumps(["yes", "maybe", "no"]))
    found = read_published(maps, ids, "maps")
    assert found.item_ids == ids and found.answers.tolist() == [Answer.YES, Answer.MAYBE, Answer.NO] and found.annotators == ("waterbirds_gradcam",) * 3
    neurons = tmp_path / "waterbirds_neuron.json"
    neurons.write_text(json.dumps([True, False, True]))
    assert read_published(neurons, ids, "neurons").answers.tolist() == [Answer.YES, Answer.NO, Answer.YES]


@pytest.mark.parametrize(("content", "question", "message"), [
    (["yes", "no"], "maps", r"2 answers, but the split has 3 images"),
    (["yes", "no", "perhaps"], "maps", r"entry 2 is 'perhaps', expected \"yes\", \"no\" or \"maybe\""),
    ([True, 1, False], "neurons", r"entry 1 is 1, expected true or false"),
    ([True] * 4, "neurons", r"4 answers, but the split has 3 neurons"),
])
def test_a_published_list_that_does_not_fit_the_split_names_the_first_offending_entry(tmp_path, content, question, message):
    path = tmp_path / "list.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match=rf"list\.json: {message}"):
        read_published(path, ("x-0", "x-1", "x-2"), question)


def _tiny_files(tmp_path):
    return (tiny_image_set(), *tiny_answer_files(tmp_path))


def test_the_human_source_keeps_the_annotation_source_contract(tmp_path):
    train, maps, judged, drawings = _tiny_files(tmp_path)
    source = human(answers=[str(maps), str(judged), str(drawings)])
    assert source.judges() == {"maps", "neurons", "attention"}
    report = check_annotation_source(source)
    assert "refuses-part-of-a-split" in report.kept and set(report.skipped) == {"order-independent", "handles-no-items"}
    questions = _questions(tiny_model(), train)
    found = human(answers=str(maps)).annotate_maps(questions["maps"])
    assert len(found.item_ids) == 12 + 8 and set(found.annotators) == {"alice", "bob"}
    neurons = human(answers=str(judged)).annotate_neurons(questions["neurons"])
    assert neurons.answers.tolist() == [1 - i % 2 for i in range(len(neurons.item_ids))]  # yes, no, yes, …
    drawn = human(answers=str(drawings)).annotate_attention(questions["attention"])
    assert drawn.item_ids == (train.ids[0], train.ids[5]) and torch.equal(drawn.regions, train.masks[[0, 5]])


def test_human_errors_name_the_file(tmp_path):
    train, maps, _, drawings = _tiny_files(tmp_path)
    questions = _questions(tiny_model(), train)
    with pytest.raises(DataError, match=r"answers file .*nowhere\.jsonl does not exist"):
        human(answers=str(tmp_path / "nowhere.jsonl")).judges()
    with pytest.raises(ConfigError, match="answers"):
        human()
    (tmp_path / "empty.jsonl").touch()
    with pytest.raises(DataError, match=r"empty\.jsonl: holds no answers yet"):
        human(answers=str(tmp_path / "empty.jsonl")).judges()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "drawing-0.png")
    with pytest.raises(DataError, match=r"drawing-0\.png: the mask is 8×8, the image is 16×16"):
        human(answers=str(drawings)).annotate_attention(questions["attention"])
    copy = tmp_path / "copy.jsonl"
    copy.write_text(maps.read_text())
    with pytest.raises(DataError, match="annotator 'alice' answered item 'tiny-000' in more than one of"):
        human(answers=[str(maps), str(copy)]).annotate_maps(questions["maps"])


def test_answers_count_only_for_the_class_whose_map_people_saw(tmp_path):
    """A task names the class each map explains; its answers answer a question about that class's
    map only. Answers without a task beside them are about each image's label."""
    train = tiny_image_set()
    maps = torch.rand(len(train), 4, 4, generator=torch.Generator().manual_seed(0))
    predicted = train.labels.clone()
    predicted[:3] = 1 - predicted[:3]  # the model gets images 0, 1, 2 wrong
    write_task(tmp_path / "predicted", Question.MAPS, "key", train, list(range(len(train))), maps=maps, classes=predicted)
    shown = json.loads((tmp_path / "predicted" / "task.json").read_text())["items"]
    assert [item["label"] for item in shown[:4]] == [train.class_names[int(c)] for c in predicted[:4]]
    on_task = write(tmp_path / "predicted" / "answers.jsonl", *[record(item, "yes", seconds=i) for i, item in enumerate(train.ids)])
    loose = write(tmp_path / "loose.jsonl", *[record(item, "no", "bob", seconds=i) for i, item in enumerate(train.ids)])
    source = human(answers=[str(on_task), str(loose)])

    about_predicted = source.annotate_maps(MapsToJudge.of(train, maps, predicted))
    alice = [i for i, who in zip(about_predicted.item_ids, about_predicted.annotators) if who == "alice"]
    bob = [i for i, who in zip(about_predicted.item_ids, about_predicted.annotators) if who == "bob"]
    assert alice == list(train.ids) and bob == list(train.ids[3:])  # bob judged the labels' maps: the same maps from image 3 on

    about_labels = source.annotate_maps(MapsToJudge.of(train, maps))
    alice = [i for i, who in zip(about_labels.item_ids, about_labels.annotators) if who == "alice"]
    assert alice == list(train.ids[3:]) and about_labels.annotators.count("bob") == len(train)


def test_answers_about_another_model_are_refused_unless_accepted_and_then_reported(tmp_path, capsys):
    train = tiny_image_set()
    maps = torch.rand(len(train), 4, 4, generator=torch.Generator().manual_seed(0))
    path = write(
        tmp_path / "a.jsonl",
        record(train.ids[0], "yes", task="this-model"), record(train.ids[1], "no", seconds=1, task="old-model"), record(train.ids[2], "maybe", seconds=2),
    )
    items = MapsToJudge.of(train, maps, key="this-model")
    with pytest.raises(DataError, match=r"a\.jsonl: 1 of its 3 maps answers are about another model's maps \(task old-model; this run's is this-model\).*accept_other_models = true"):
        human(answers=str(path)).annotate_maps(items)
    found = human(answers=str(path), accept_other_models=True).annotate_maps(items)
    assert found.item_ids == train.ids[:3] and "1 of its 3 maps answers are about another model's maps" in capsys.readouterr().err
    assert human(answers=str(path)).annotate_maps(MapsToJudge.of(train, maps)).item_ids == train.ids[:3]  # a caller that names no model checks nothing


def test_a_panel_of_copies_of_people_is_refused(tmp_path):
    answers = write(tmp_path / "a.jsonl", record("bars-0", "yes"))
    config = RunConfig.model_validate({**TINY, "annotator": {"name": "human", "answers": str(answers)}, "panel": {"size": 2}})
    with pytest.raises(ConfigError, match="panel of 2 needs a simulated annotator"):
        Pipeline.from_config(config, cache=ArtefactCache(tmp_path))


@pytest.mark.slow
def test_the_authors_list_and_the_equivalent_answers_file_give_the_same_run(tmp_path):
    """The embedded benchmark's training split answered in the published format and as JSON lines:
    the same answers, the same refined model, the same numbers; the file's content keys the cache."""
    ids = load(Pipeline.from_config(RunConfig.model_validate(TINY), cache=ArtefactCache(tmp_path / "c")), "train").ids
    words = [["yes", "no", "maybe", "no"][i % 4] for i in range(len(ids))]
    published = tmp_path / "bars_gradcam.json"
    published.write_text(json.dumps(words))
    lines = write(tmp_path / "bars.jsonl", *[record(item, word, "bars_gradcam", seconds=i) for i, (item, word) in enumerate(zip(ids, words))])

    def run(path, out):
        config = RunConfig.model_validate({**TINY, "refiners": ["crayon-attention"], "annotator": {"name": "human", "answers": str(path)}})
        Pipeline.from_config(config, cache=ArtefactCache(tmp_path / "c")).run(out)
        return json.loads((out / "results.json").read_text())

    a, b = run(published, tmp_path / "a"), run(lines, tmp_path / "b")
    assert a["annotations"] == b["annotations"] == {"yes": words.count("yes"), "no": words.count("no"), "maybe": words.count("maybe")}
    assert [r["metrics"] for r in a["rows"]] == [r["metrics"] for r in b["rows"]]
    published.write_text(json.dumps(["yes"] * len(ids)))  # another file content: another answers cache entry
    assert run(published, tmp_path / "c2")["annotations"] == {"yes": len(ids), "no": 0, "maybe": 0}


@pytest.mark.slow
def test_drawings_people_painted_guide_gradia_exactly_as_the_same_regions_from_the_oracle(tmp_path):
    """People's PNG masks reach GRADIA as drawn regions: drawings equal to the object masks give the
    run the saliency oracle's exact drawings give, also when a second person drew some of the same
    images (the panel's drawings are combined per image, not refused)."""
    base = {**TINY, "refiners": ["gradia"], "refiner": {"gradia": {"epochs": 1}}}
    train = load(Pipeline.from_config(RunConfig.model_validate(base), cache=ArtefactCache(tmp_path / "c")), "train")
    oracle_answers = create("annotation_source", "saliency-oracle", {})
    records = []
    for i, item in enumerate(train.ids):
        Image.fromarray(train.masks[i].numpy().astype(np.uint8) * 255).save(tmp_path / f"{i}.png")
        records.append(record(item, None, "oracle", question="attention", drawing=f"{i}.png"))
        if i % 2:
            records.append(record(item, None, "carol", question="attention", drawing=f"{i}.png"))
    drawings = write(tmp_path / "attention.jsonl", *records)
    p = Pipeline.from_config(RunConfig.model_validate(base), cache=ArtefactCache(tmp_path / "c"))
    model = original_model(p, train).model
    task = prepare_task(p, Question.MAPS, tmp_path / "task", MapsOf.PREDICTED)  # gradia's question: the predicted classes' maps
    classes, maps = predicted_maps(p, model, train, shared_features(p, model, train, "train"))
    assert [item.label for item in task.items] == [train.class_names[int(c)] for c in classes[[train.ids.index(item.item) for item in task.items]]]
    truth = oracle_answers.annotate_maps(MapsToJudge.of(train, maps, classes))
    answers = write(task.answers, *[record(item, ("no", "yes", "maybe")[a], "oracle") for item, a in zip(truth.item_ids, truth.answers.tolist())])

    def run(annotator, out):
        Pipeline.from_config(RunConfig.model_validate({**base, "annotator": annotator}), cache=ArtefactCache(tmp_path / "c")).run(out)
        return json.loads((out / "results.json").read_text())

    people = run({"name": "human", "answers": [str(answers), str(drawings)]}, tmp_path / "people")
    oracle = run({"name": "saliency-oracle"}, tmp_path / "oracle")
    assert people["predicted_map_annotations"] == oracle["predicted_map_annotations"] and sum(oracle["predicted_map_annotations"].values()) == len(train)
    assert [r["metrics"] for r in people["rows"]] == [r["metrics"] for r in oracle["rows"]]
