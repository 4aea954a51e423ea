"""The viewer as a person uses it: a real Chromium, real servers (``ovformer view``), real files."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from ovformer_core.io.results import load_result
from tests.conftest import write_video
from tests.view.conftest import BOXES, CATEGORIES, HEIGHT, WIDTH, Served, box_masks

pytestmark = pytest.mark.usefixtures("browser")

#: Largest difference allowed between a canvas pixel and the expected blend (JPEG transport).
PIXEL_TOLERANCE = 10
WAIT_SECONDS = 30


def wait_for(browser, script: str, timeout: float = WAIT_SECONDS):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(script))


def open_index(browser, server) -> None:
    browser.get(server.url)
    wait_for(browser, "return document.body.dataset.ready === '1'")


def open_result(browser, server, name: str) -> None:
    from selenium.webdriver.common.by import By

    open_index(browser, server)
    browser.find_element(By.LINK_TEXT, name).click()
    wait_for(browser, "return document.body.dataset.ready === '1' && window.viewer.drawnPos === 0")


def row(browser, track_id: int):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, f'#tracks .track[data-track-id="{track_id}"]')


def row_color(browser, track_id: int) -> np.ndarray:
    text = row(browser, track_id).get_attribute("data-color")
    return np.array([int(v) for v in text.removeprefix("rgb(").removesuffix(")").split(",")], dtype=float)


def pixel(browser, x: int, y: int) -> np.ndarray:
    script = "const c = document.getElementById('frame').getContext('2d');"
    script += "return Array.from(c.getImageData(arguments[0], arguments[1], 1, 1).data)"
    values = browser.execute_script(script, x, y)
    return np.array(values[:3], dtype=float)


def inside(track_id: int) -> tuple[int, int]:
    """A point (x, y) well inside a known track's rectangle."""
    _, _, y0, y1, x0, x1 = BOXES[track_id]
    return (x0 + x1) // 2, (y0 + y1) // 2


def step(browser, key: str, expected_position: int, shift: bool = False) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    actions = ActionChains(browser)
    if shift:
        actions.key_down(Keys.SHIFT)
    actions.send_keys(key)
    if shift:
        actions.key_up(Keys.SHIFT)
    actions.perform()
    wait_for(browser, f"return window.viewer.drawnPos === {expected_position}")


def assert_blend(found: np.ndarray, frame_pixel: np.ndarray, color: np.ndarray | None) -> None:
    expected = frame_pixel if color is None else 0.5 * color + 0.5 * frame_pixel
    assert np.abs(found - expected).max() <= PIXEL_TOLERANCE, (found, expected)


def test_index_lists_the_two_results(browser, shared):
    from selenium.webdriver.common.by import By

    served, server = shared
    open_index(browser, server)
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    cells = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows]
    assert [c[0] for c in cells] == ["clip", "other"]  # notes.json is not a result
    assert cells[0][1:5] == ["clip.json", "10", "4", "car, dog, person"]
    assert cells[1][1:5] == ["other.json", "10", "2", "dog, person"]
    assert all(c[6] == "not reviewed" for c in cells)


def test_masks_are_drawn_in_their_colour_on_their_frames_only(browser, shared, tmp_path: Path):
    from selenium.webdriver.common.keys import Keys

    served, server = shared
    open_result(browser, server, "clip")
    frames = served.frames.astype(float)
    person, dog = inside(1), inside(2)
    # frame 0: the person (frames 0-5) is drawn, the dog (frames 3-9) is not
    assert_blend(pixel(browser, *person), frames[0, person[1], person[0]], row_color(browser, 1))
    assert_blend(pixel(browser, *dog), frames[0, dog[1], dog[0]], None)
    for position in (1, 2, 3):
        step(browser, Keys.ARROW_RIGHT, position)
    assert_blend(pixel(browser, *dog), frames[3, dog[1], dog[0]], row_color(browser, 2))
    assert_blend(pixel(browser, *person), frames[3, person[1], person[0]], row_color(browser, 1))
    step(browser, Keys.ARROW_RIGHT, 9, shift=True)  # ten ahead, clipped to the last frame
    assert_blend(pixel(browser, *person), frames[9, person[1], person[0]], None)
    step(browser, Keys.ARROW_LEFT, 8)
    assert_blend(pixel(browser, *dog), frames[8, dog[1], dog[0]], row_color(browser, 2))
    assert browser.save_screenshot(str(tmp_path / "result-page.png"))
    assert (tmp_path / "result-page.png").stat().st_size > 10_000


def test_clicking_a_mask_selects_its_track_and_jumps_to_its_first_frame(browser, shared):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    served, server = shared
    open_result(browser, server, "clip")
    for position in range(1, 8):
        step(browser, Keys.ARROW_RIGHT, position)
    canvas = browser.find_element(By.ID, "frame")
    size = canvas.size
    x, y = inside(4)  # the second dog, frames 6-9
    offset_x = (x + 0.5) / WIDTH * size["width"] - size["width"] / 2
    offset_y = (y + 0.5) / HEIGHT * size["height"] - size["height"] / 2
    ActionChains(browser).move_to_element_with_offset(canvas, int(offset_x), int(offset_y)).click().perform()
    wait_for(browser, "return window.viewer.drawnPos === 6 && window.viewer.state.selected === 4")
    assert "selected" in row(browser, 4).get_attribute("class")
    row(browser, 1).click()
    wait_for(browser, "return window.viewer.drawnPos === 0 && window.viewer.state.selected === 1")


def test_filters_hide_tracks(browser, shared):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    served, server = shared
    open_result(browser, server, "clip")
    frames = served.frames.astype(float)
    person, car = inside(1), inside(3)
    Select(browser.find_element(By.ID, "filter-category")).select_by_visible_text("car")
    assert [r.get_attribute("data-track-id") for r in browser.find_elements(By.CSS_SELECTOR, ".track:not(.hidden)")][
        1:
    ] == ["3"]
    assert_blend(pixel(browser, *person), frames[0, person[1], person[0]], None)
    assert_blend(pixel(browser, *car), frames[0, car[1], car[0]], row_color(browser, 3))
    Select(browser.find_element(By.ID, "filter-category")).select_by_visible_text("all")
    browser.execute_script(
        "const s = document.getElementById('filter-score'); s.value = '0.5'; s.dispatchEvent(new Event('input'))"
    )
    visible = [r.get_attribute("data-track-id") for r in browser.find_elements(By.CSS_SELECTOR, ".track:not(.hidden)")]
    assert visible[1:] == ["1", "2", "4"]  # the car scores 0.2
    assert_blend(pixel(browser, *car), frames[0, car[1], car[0]], None)
    assert_blend(pixel(browser, *person), frames[0, person[1], person[0]], row_color(browser, 1))


def _decode(rle: dict | None) -> np.ndarray:
    if rle is None:
        return np.zeros((HEIGHT, WIDTH), dtype=bool)
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_rename_delete_merge_undo_and_save_write_the_reviewed_result(browser, served: Served, server_for):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    original_bytes = (served.folder / "clip.json").read_bytes()
    original = load_result(served.folder / "clip.json")
    server = server_for(served.folder)
    open_result(browser, server, "clip")

    def rename(track_id: int, name: str) -> None:
        row(browser, track_id).click()
        field = browser.find_element(By.ID, "rename-input")
        field.clear()
        field.send_keys(name)
        browser.find_element(By.ID, "rename").click()

    rename(1, "cat")  # a new name, typed
    row(browser, 3).click()
    browser.find_element(By.ID, "delete").click()
    row(browser, 4).click()
    Select(browser.find_element(By.ID, "merge-into")).select_by_value("2")
    browser.find_element(By.ID, "merge").click()
    rename(2, "person")  # a vocabulary name ... taken back
    browser.find_element(By.ID, "undo").click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#tracks .track[data-track-id]")
    assert [(r.get_attribute("data-track-id"), r.get_attribute("data-category")) for r in rows] == [
        ("1", "cat"),
        ("2", "dog"),
    ]
    browser.find_element(By.ID, "save").click()
    wait_for(browser, "return document.body.dataset.saved === '1'")

    assert (served.folder / "clip.json").read_bytes() == original_bytes
    document = json.loads((served.folder / "clip.reviewed.json").read_text())
    assert document["format"] == "ovformer-results" and len(document["videos"]) == 1
    reviewed = load_result(served.folder / "clip.reviewed.json")
    for name in ("video_name", "video_path", "video_id", "width", "height", "num_frames", "fps", "frame_indices"):
        assert getattr(reviewed, name) == getattr(original, name), name
    assert reviewed.model_id == original.model_id
    assert reviewed.categories == [*CATEGORIES, {"id": 4, "name": "cat"}]
    assert [t.track_id for t in reviewed.tracks] == [1, 2]
    cat, dog = reviewed.tracks
    assert (cat.label, cat.category_name, cat.category_id, cat.score) == (3, "cat", 4, pytest.approx(0.9))
    assert cat.segmentations == original.tracks[0].segmentations
    assert (dog.label, dog.category_name, dog.category_id, dog.score) == (1, "dog", 2, pytest.approx(0.8))
    joined = box_masks(2) | box_masks(4)
    for t in range(reviewed.num_frames):
        assert np.array_equal(_decode(dog.segmentations[t]), joined[t]), t
    assert dog.segmentations[:3] == [None, None, None]
    review = reviewed.metadata["review"]
    assert review["reviewed"] is True and review["revision"] == 1
    assert review["edits"] == [
        {"op": "rename", "track_id": 1, "category_name": "cat"},
        {"op": "delete", "track_id": 3},
        {"op": "merge", "track_id": 4, "into": 2},
    ]
    assert (review["original"], review["tracks_before"], review["tracks_after"]) == ("clip.json", 4, 2)
    assert datetime.fromisoformat(review["time"]).tzinfo is not None

    # the index shows the review, and the page reopens with it
    open_result(browser, server, "clip")
    assert browser.execute_script("return window.viewer.state.edits.length") == 3
    assert browser.execute_script("return window.viewer.state.revision") == 1
    open_index(browser, server)
    assert "reviewed (3 edits)" in browser.find_element(By.CSS_SELECTOR, "#results tbody").text


def test_a_moved_video_can_be_pointed_at(browser, shared):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    served, server = shared
    open_result(browser, server, "other")
    notice = browser.find_element(By.ID, "video-missing")
    assert notice.is_displayed() and "not there" in notice.text
    Select(browser.find_element(By.ID, "relocate-video")).select_by_value("clip.mp4")
    browser.find_element(By.ID, "relocate").click()
    wait_for(browser, "return document.getElementById('video-missing').hidden && window.viewer.state.bitmap !== null")
    frames = served.frames.astype(float)
    x, y = inside(2)
    assert_blend(pixel(browser, x, y), frames[0, y, x], None)  # the real frame, not the grey placeholder


def test_a_run_started_from_the_page_completes_and_appears(browser, server_for, tmp_path: Path, weights):
    from selenium.webdriver.common.by import By

    folder = tmp_path / "empty"
    folder.mkdir()
    write_video(tmp_path / "walk.mp4", num_frames=6, height=48, width=64)
    server = server_for(folder, weights=weights["model"], clip_weights=weights["clip"], device="cpu", min_size=64)
    open_index(browser, server)
    assert "No results" in browser.find_element(By.ID, "results-status").text
    browser.find_element(By.ID, "upload-file").send_keys(str(tmp_path / "walk.mp4"))
    wait_for(browser, "return document.getElementById('run-video').value === 'uploads/walk.mp4'")
    browser.find_element(By.ID, "run-vocabulary").send_keys("person, dog")
    threshold = browser.find_element(By.ID, "run-threshold")
    threshold.clear()
    threshold.send_keys("0")
    browser.find_element(By.ID, "run-start").click()
    wait_for(browser, "return document.querySelector('#runs tr[data-state=\"done\"]') !== null", timeout=300)
    progress = browser.find_element(By.CSS_SELECTOR, '#runs tr[data-state="done"]').text
    assert "6/6 frames" in progress and "windows/s" in progress
    wait_for(browser, "return document.querySelectorAll('#results tbody tr').length === 1")
    assert browser.find_element(By.CSS_SELECTOR, "#results tbody td").text == "walk"
    result = load_result(folder / "walk.json")
    assert result.num_frames == 6 and [c["name"] for c in result.categories] == ["person", "dog"]
    assert result.video_path == str(folder / "uploads" / "walk.mp4")
    browser.find_element(By.LINK_TEXT, "walk").click()
    wait_for(browser, "return window.viewer.drawnPos === 0 && window.viewer.state.bitmap !== null")


def test_the_page_decodes_rle_as_pycocotools_does(browser, shared):
    from ovformer_core.io.rle import encode_rle, run_lengths

    _, server = shared
    open_index(browser, server)
    rng = np.random.default_rng(0)
    masks = [rng.random((37, 53)) < p for p in (0.0, 0.02, 0.5, 0.98, 1.0)]
    masks.append(np.zeros((300, 400), dtype=bool))
    masks[-1][20:280, 7:390] = True  # long runs: many 5-bit groups, negative deltas
    counts = [encode_rle(mask)["counts"] for mask in masks]
    script = """
        const [counts, shapes, done] = arguments;
        import('/static/rle.js').then((rle) => done(counts.map((c, i) => {
            const [h, w] = shapes[i];
            const runs = rle.runLengths(c);
            const rgba = new Uint8ClampedArray(h * w * 4);
            const labels = new Int32Array(h * w);
            const box = rle.paintRuns(runs, h, w, rgba, labels, 7, [1, 2, 3]);
            return [runs, Array.from(labels), box];
        })));
    """
    decoded = browser.execute_async_script(script, counts, [list(m.shape) for m in masks])
    for mask, text, (runs, labels, box) in zip(masks, counts, decoded, strict=True):
        assert runs == run_lengths(text).tolist()
        assert np.array_equal(np.array(labels).reshape(mask.shape) == 7, mask)
        ys, xs = np.nonzero(mask)
        assert box == (None if not mask.any() else [xs.min(), ys.min(), xs.max(), ys.max()])
