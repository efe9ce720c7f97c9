"""docs/plugins.md: every example runs and passes its contract check; the promise table is complete."""

import re
import runpy
from pathlib import Path

import pytest
from test_contracts import MutatesTheOriginal

from crayon_plugins.testing import PROMISES, ContractError, check_refiner

GUIDE = Path(__file__).parents[2] / "docs" / "plugins.md"
TEXT = GUIDE.read_text()
EXAMPLES = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)


def test_the_guide_has_an_example_for_every_hook_and_a_property_test():
    hooks = {re.search(r"def (crayon_\w+)\(\)", code).group(1) for code in EXAMPLES if "@hookimpl" in code}
    assert hooks == {"crayon_backbones", "crayon_datasets", "crayon_interpreters", "crayon_concept_extractors",
                     "crayon_annotation_sources", "crayon_refiners", "crayon_metrics"}
    assert any("@given" in code for code in EXAMPLES)


@pytest.mark.parametrize("code", EXAMPLES, ids=[re.search(r"^(?:class |def test_)(\w+)", c, re.M).group(1) for c in EXAMPLES])
def test_each_example_runs_and_keeps_its_contract(code, monkeypatch, tmp_path):
    """Each example ends with its contract check (or calls its property test); it runs from a file so
    hypothesis can read the test's source."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "plugins" / "examples" / "src"))
    example = tmp_path / "guide_example.py"
    example.write_text(code)
    runpy.run_path(str(example), run_name="guide_example")


def test_the_promise_table_lists_every_promise():
    table = TEXT.split("(`crayon_plugins.testing.PROMISES`):")[1].split("A failing check")[0]
    for kind, promises in PROMISES.items():
        for promise in promises:
            assert f"`{promise}`" in table, f"{kind} promise {promise} missing from the guide"


def test_the_quoted_failure_is_what_the_check_prints():
    quoted = TEXT.split("A failing check reads like this")[1].split("```text\n")[1].split("```")[0].strip()
    with pytest.raises(ContractError) as caught:
        check_refiner(MutatesTheOriginal())
    assert str(caught.value) == quoted
