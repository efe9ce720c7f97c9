"""Writes docs/annotation-page.png: the annotation page on the quickstart configuration, a person
seven answers in, and docs/annotation-page-360.png: the same page on a 360 px wide phone screen. Run: .venv/bin/python docs/annotation_page_screenshot.py (trains or loads the
quickstart model; needs Debian's chromium and chromium-driver, which `make test` installs)."""

import sys
import tempfile
from pathlib import Path

from selenium.webdriver.common.action_chains import ActionChains

from crayon_plugins import Pipeline
from crayon_plugins.annotation.server import create_app
from crayon_plugins.config import RunConfig
from crayon_plugins.run.cache import ArtefactCache
from crayon_plugins.run.stages.annotate import prepare_task
from crayon_plugins.testing.browser import headless_chromium, missing_browser, serving, wait_for

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "annotation-page.png"
narrow = out.with_name(f"{out.stem}-360.png")
if why := missing_browser():
    sys.exit(why)
with tempfile.TemporaryDirectory() as folder:
    task = prepare_task(Pipeline.from_config(RunConfig(), [], ArtefactCache()), "maps", Path(folder) / "maps")
    with serving(lambda address: create_app(task, address)) as address, headless_chromium(1100, 860) as browser:
        browser.get(f"{address}/?annotator=alice")
        wait_for(browser, lambda b: "answered" in b.find_element("id", "progress").text)
        for k, key in enumerate("yynmyny"[:7]):
            ActionChains(browser).send_keys(key).perform()
            wait_for(browser, lambda b, k=k: b.find_element("id", "progress").text.startswith(f"{k + 1} /"))
        wait_for(browser, lambda b: b.find_element("id", "saved").text == "all saved")
        browser.save_screenshot(str(out))
        with headless_chromium(360, 740) as phone:
            phone.get(f"{address}/?annotator=alice")
            wait_for(phone, lambda b: b.execute_script("return document.images.length > 1 && [...document.images].every((i) => i.complete)"))
            phone.save_screenshot(str(narrow))
print(f"wrote {out} and {narrow}")
