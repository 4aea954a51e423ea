"""Which files the viewer lists, and how."""

from __future__ import annotations

from pathlib import Path

from ovformer_core.view.results_index import ResultIndex
from ovformer_core.view.review import save_review
from ovformer_core.view.served_files import ServedFolder
from tests.view.conftest import make_served


def test_the_index_lists_results_with_their_review_state(tmp_path: Path):
    served = make_served(tmp_path / "results")
    save_review(served.folder / "clip.json", 0, [], base_revision=0)
    (served.folder / "sub").mkdir()
    (served.folder / "clip.json").rename(served.folder / "sub" / "clip.json")
    (served.folder / "clip.reviewed.json").rename(served.folder / "sub" / "clip.reviewed.json")
    (served.folder / "orphan.reviewed.json").write_bytes((served.folder / "sub" / "clip.reviewed.json").read_bytes())
    (served.folder / "broken.json").write_text('{"format": "ovformer-results", "version": 1, "videos": [{"x": 3}]}')
    (served.folder / ".hidden.json").write_bytes((served.folder / "other.json").read_bytes())
    outside = tmp_path / "outside.json"
    outside.write_bytes((served.folder / "other.json").read_bytes())
    (served.folder / "link.json").symlink_to(outside)
    rows = ResultIndex(ServedFolder(served.folder)).summaries()
    assert [row["file"] for row in rows] == ["broken.json", "orphan.reviewed.json", "other.json", "sub/clip.json"]
    broken, orphan, other, clip = rows
    assert broken["id"] is None and "missing key" in broken["error"]
    assert orphan["review"]["problem"].startswith("this is a reviewed copy whose original is missing")
    assert (other["frames"], other["tracks"], other["categories"]) == (10, 2, ["dog", "person"])
    assert other["review"]["reviewed"] is False
    assert clip["review"]["reviewed"] is True and clip["review"]["revision"] == 1


def test_one_file_mode_lists_that_file_and_the_runs_added(tmp_path: Path):
    served = make_served(tmp_path / "results")
    index = ResultIndex(ServedFolder(served.folder), only=[served.folder / "clip.json"])
    assert [row["file"] for row in index.summaries()] == ["clip.json"]
    index.add(served.folder / "other.json")
    assert [row["file"] for row in index.summaries()] == ["clip.json", "other.json"]
