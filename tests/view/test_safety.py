"""What a careless user or an attacker can send to ``ovformer view``, over plain HTTP (no browser)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ovformer_cli.app import app
from tests.conftest import write_video
from tests.view.conftest import Served, Server, make_served, stop_server

JSON = {"Content-Type": "application/json"}


def error_of(server: Server, path: str, method: str = "GET", payload: object = None, **kwargs) -> tuple[int, str]:
    status, data = server.json(path, method, payload, **kwargs)
    assert isinstance(data, dict) and set(data) == {"error"}, data
    assert "\n" not in data["error"]
    return status, data["error"]


def first_id(server: Server, name: str = "clip") -> str:
    status, data = server.json("/api/results")
    assert status == 200
    return next(row["id"] for row in data["results"] if row.get("video_name") == name)


def test_every_api_request_needs_the_token_and_a_loopback_host(served: Served, server_for):
    server = server_for(served.folder)
    assert error_of(server, "/api/results", token=False) == (
        401,
        "a missing access token; open the URL `ovformer view` printed (it carries the token)",
    )
    status, message = error_of(server, "/api/results", headers={"X-OVFormer-Token": "guess"}, token=False)
    assert status == 401 and message.startswith("a wrong access token")
    # a page of another site re-pointing its name at 127.0.0.1 (DNS rebinding) is refused, even with the token
    status, _, body = server.request("/api/results", headers={"Host": "evil.example:80"})
    assert status == 403 and "localhost" in json.loads(body)["error"]
    # on loopback the pages themselves open without the token (they carry it for the API)
    status, _, body = server.request("/", token=False)
    assert status == 200 and server.token.encode() in body
    assert server.request("/api/results")[0] == 200


def test_another_host_needs_the_token_on_every_request(served: Served, server_for):
    server = server_for(served.folder, host="0.0.0.0")
    assert "?token=" in server.url
    for path in ("/", "/static/viewer.css", "/api/results"):
        assert server.request(path, token=False)[0] == 401, path
    status, headers, _ = server.request(f"/?token={server.token}", token=False)
    assert status == 200
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert server.request("/api/results", token=False, headers={"Cookie": f"ovformer_token={server.token}"})[0] == 200
    assert server.request("/api/results", token=False, headers={"Cookie": "ovformer_token=nope"})[0] == 401


def test_paths_outside_the_folder_are_refused(served: Served, server_for, tmp_path: Path):
    outside = tmp_path / "outside.mp4"
    write_video(outside, num_frames=2, height=120, width=160)
    (served.folder / "link.mp4").symlink_to(outside)
    (served.folder / "linkdir").symlink_to(tmp_path)
    server = server_for(served.folder)
    run = {"vocabulary": "dog", "threshold": 0.5}
    for video in ("../outside.mp4", str(outside), "link.mp4", "linkdir/outside.mp4", "a/../../outside.mp4", ""):
        status, message = error_of(server, "/api/runs", "POST", {**run, "video": video})
        assert status == 403, (video, message)
    for video in ("/etc/passwd", "../../../../etc/passwd", "..\\..\\etc\\passwd", "clip.mp4\x00.png"):
        status, _ = error_of(server, f"/api/results/{first_id(server, 'other')}/video", "POST", {"path": video})
        assert status == 403, video
    # static files and pages: traversal in the URL finds nothing
    for path in ("/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd", "/static/..%2fapp.py"):
        status, _, body = server.request(path)
        assert status == 404 and b"root:" not in body, path
    status, message = error_of(server, "/result/..%2F..%2Fetc%2Fpasswd")
    assert status == 404
    # the symlinks are not offered either
    status, data = server.json("/api/videos?all=true")
    assert data["videos"] == ["clip.mp4"]


def test_uploads_are_checked_for_size_and_type(served: Served, server_for, tmp_path: Path):
    server = server_for(served.folder, max_upload_bytes=1024**2)
    uploads = served.folder / "uploads"

    def upload(name: str, body: bytes) -> tuple[int, dict]:
        status, _, data = server.request(f"/api/uploads?name={name}", "PUT", body)
        return status, json.loads(data)

    status, data = upload("huge.mp4", b"\0" * (1024**2 + 1))
    assert status == 413 and "1 MB" in data["error"]
    status, data = upload("notes.txt", b"hello")
    assert status == 403 and "not a video file" in data["error"]
    status, data = upload("fake.mp4", b"this is not a video" * 100)
    assert status == 415 and data["error"] == "fake.mp4 is not a video that can be decoded; upload a video file"
    status, data = upload("empty.mp4", b"")
    assert status == 400
    assert not uploads.exists() or sorted(os.listdir(uploads)) == []  # nothing half-written left behind
    write_video(tmp_path / "walk.mp4", num_frames=3, height=48, width=64)
    body = (tmp_path / "walk.mp4").read_bytes()
    assert upload("../../walk.mp4", body) == (200, {"video": "uploads/walk.mp4", "bytes": len(body)})
    assert upload("walk.mp4", body)[1]["video"] == "uploads/walk-2.mp4"  # never overwrites
    assert sorted(os.listdir(uploads)) == ["walk-2.mp4", "walk.mp4"]
    # the same name uploaded four times at once: four files, none replacing another
    outcomes: list[tuple[int, dict]] = []
    threads = [threading.Thread(target=lambda: outcomes.append(upload("walk.mp4", body))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(data["video"] for _, data in outcomes) == [f"uploads/walk-{n}.mp4" for n in (3, 4, 5, 6)]
    assert sorted(os.listdir(uploads)) == sorted(["walk.mp4", *(f"walk-{n}.mp4" for n in range(2, 7))])
    assert all((uploads / name).read_bytes() == body for name in os.listdir(uploads))


def test_malformed_requests_get_one_json_line_and_the_server_goes_on(served: Served, server_for):
    server = server_for(served.folder)
    rid = first_id(server)
    bad = [
        (f"/api/results/{rid}/review", "POST", b"{not json", JSON, 400),
        (f"/api/results/{rid}/review", "POST", b"[1, 2]", JSON, 400),
        (f"/api/results/{rid}/review", "POST", b'{"edits": []}', {"Content-Type": "text/plain"}, 415),
        (f"/api/results/{rid}/review", "POST", b'{"edits": 5, "revision": 0}', JSON, 400),
        (f"/api/results/{rid}/masks?start=0&stop=100000", "GET", None, {}, 400),
        (f"/api/results/{rid}/masks?start=x&stop=3", "GET", None, {}, 400),
        (f"/api/results/{rid}/frames/99", "GET", None, {}, 404),
        ("/api/results/ffffffffffff-0", "GET", None, {}, 404),
        ("/api/results/../../etc", "GET", None, {}, 404),
        ("/api/nothing", "GET", None, {}, 404),
        ("/api/runs", "DELETE", None, {}, 405),
        ("/api/runs", "POST", b'{"video": "clip.mp4", "vocabulary": ""}', JSON, 400),
        ("/api/runs", "POST", b'{"video": "clip.mp4", "vocabulary": "a", "threshold": 7}', JSON, 400),
        ("/api/runs", "POST", b'{"video": "clip.mp4", "vocabulary": "a", "model": "x"}', JSON, 400),
        ("/api/runs", "POST", b'{"video": "clip.json", "vocabulary": "a"}', JSON, 404),
    ]
    for path, method, body, headers, expected in bad:
        status, _, data = server.request(path, method, body, headers)
        message = json.loads(data)
        assert status == expected and set(message) == {"error"}, (path, status, message)
    too_big = b'{"edits": [' + b'{"op": "delete", "track_id": 1},' * 200_000 + b"{}]}"
    status, _, data = server.request(f"/api/results/{rid}/review", "POST", too_big, JSON)
    assert status == 413
    edits = [
        ({"op": "explode", "track_id": 1}, "unknown op"),
        ({"op": "delete", "track_id": 0}, "track ids are integers from 1"),
        ({"op": "merge", "track_id": 2, "into": 2}, "cannot be merged into itself"),
        ({"op": "rename", "track_id": 1, "category_name": "\x07bell"}, "control characters"),
        ({"op": "delete", "track_id": 77}, "track 77 does not exist"),
    ]
    for edit, words in edits:
        status, message = error_of(server, f"/api/results/{rid}/review", "POST", {"edits": [edit], "revision": 0})
        assert status == 400 and words in message, message
    assert not (served.folder / "clip.reviewed.json").exists()
    assert server.request("/api/results")[0] == 200 and server.thread is not None and server.thread.is_alive()


def test_concurrent_saves_never_lose_a_review(served: Served, server_for):
    server = server_for(served.folder)
    rid = first_id(server)
    outcomes: list[tuple[int, object]] = []

    def save(track_id: int) -> None:
        payload = {"edits": [{"op": "delete", "track_id": track_id}], "revision": 0}
        outcomes.append(server.json(f"/api/results/{rid}/review", "POST", payload))

    threads = [threading.Thread(target=save, args=(t,)) for t in (1, 2, 3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(status for status, _ in outcomes)
    assert statuses == [200, 409, 409, 409]
    conflict = next(data for status, data in outcomes if status == 409)
    assert "saved from another page" in conflict["error"]
    saved = json.loads((served.folder / "clip.reviewed.json").read_text())
    assert saved["videos"][0]["metadata"]["review"]["revision"] == 1
    # a page that reloaded (revision 1) saves on top
    status, data = server.json(f"/api/results/{rid}/review", "POST", {"edits": [], "revision": 1})
    assert status == 200 and data["revision"] == 2
    assert not [name for name in os.listdir(served.folder) if name.endswith(".part")]


def test_a_moved_video_is_reported_and_only_a_matching_one_accepted(served: Served, server_for, tmp_path: Path):
    write_video(served.folder / "small.mp4", num_frames=3, height=48, width=64)
    server = server_for(served.folder)
    rid = first_id(server, "other")
    status, details = server.json(f"/api/results/{rid}")
    assert details["video"]["available"] is False
    assert "is not there (moved or deleted?); pick it below" in details["video"]["message"]
    assert error_of(server, f"/api/results/{rid}/frames/0")[0] == 404
    status, message = error_of(server, f"/api/results/{rid}/video", "POST", {"path": "small.mp4"})
    assert status == 422 and "64x48 but the result's masks are 160x120" in message
    status, video = server.json(f"/api/results/{rid}/video", "POST", {"path": "clip.mp4"})
    assert status == 200 and video == {"available": True, "path": "clip.mp4", "message": None}
    status, headers, body = server.request(f"/api/results/{rid}/frames/3")
    assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    # saving records where the video is now
    assert server.json(f"/api/results/{rid}/review", "POST", {"edits": [], "revision": 0})[0] == 200
    saved = json.loads((served.folder / "other.reviewed.json").read_text())
    assert saved["videos"][0]["video_path"] == str((served.folder / "clip.mp4").resolve())


def test_videos_outside_the_folder_need_a_videos_root(tmp_path: Path, server_for):
    served = make_served(tmp_path / "results")
    elsewhere = tmp_path / "videos"
    elsewhere.mkdir()
    os.replace(served.folder / "clip.mp4", elsewhere / "clip.mp4")
    from ovformer_core.io.results import load_result, write_result_json

    result = load_result(served.folder / "clip.json")
    from dataclasses import replace

    write_result_json(served.folder / "clip.json", replace(result, video_path=str(elsewhere / "clip.mp4")))
    server = server_for(served.folder)
    rid = first_id(server)
    _, details = server.json(f"/api/results/{rid}")
    assert details["video"]["available"] is False
    assert f"restart with --videos {elsewhere.resolve()}" in details["video"]["message"]
    stop_server(server)
    server = server_for(served.folder, video_roots=(elsewhere,))
    _, details = server.json(f"/api/results/{first_id(server)}")
    assert details["video"]["available"] is True
    assert server.request(f"/api/results/{first_id(server)}/frames/0")[0] == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing"], "missing does not exist; give a results folder or a result .json"),
        (["notes.json"], "is not an ovformer result file; give a results folder or a NAME.json"),
        ([".", "--videos", "nowhere"], "--videos nowhere is not a folder"),
        ([".", "--weights", "nope.pt"], "--weights nope.pt does not exist; check the path"),
    ],
)
def test_the_command_refuses_bad_arguments_in_one_line(
    args: list[str], message: str, served: Served, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(served.folder)
    done = CliRunner().invoke(app, ["view", *args, "--port", "0"])
    assert done.exit_code == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_a_taken_port_is_one_line(served: Served, server_for):
    server = server_for(served.folder)
    port = server.url.split(":")[2].split("/")[0]
    done = CliRunner().invoke(app, ["view", str(served.folder), "--port", port])
    assert done.exit_code == 2
    assert done.stderr.strip() == f"error: port {port} is in use; pass another with --port (0 picks a free one)"


def test_one_result_file_opens_its_page_and_lists_only_itself(served: Served, command_for, weights):
    model_flags = ["--model", "r50-lvis", "--weights", str(weights["model"]), "--clip-weights", str(weights["clip"])]
    server = command_for(served.folder / "clip.json", *model_flags)
    assert "/result/" in server.url
    status, data = server.json("/api/results")
    assert [row["video_name"] for row in data["results"]] == ["clip"]
    assert server.json("/api/models") == (200, {"models": ["r50-lvis"]})
    assert stop_server(server).strip().endswith("stopped")
    assert server.process is not None and server.process.returncode == 0


def test_without_the_view_extra_the_command_says_what_to_install(served: Served, monkeypatch: pytest.MonkeyPatch):
    import sys

    for name in [name for name in sys.modules if name.startswith("ovformer_core.view")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)
    done = CliRunner().invoke(app, ["view", str(served.folder), "--port", "0"])
    assert done.exit_code == 2
    assert done.stderr == "error: ovformer view needs fastapi, which is not installed; pip install 'ovformer[view]'\n"


def test_messages_are_shown_in_the_words_of_whoever_started_the_viewer(tmp_path: Path, server_for):
    """The library names functions (`write_result_json()`); a viewer started by the CLI shows its commands."""
    from ovformer_cli.console import as_flags

    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "old.json").write_text(json.dumps({"format": "ovformer-results", "version": 7, "videos": []}))
    for messages, expected in ((str, "write it again with `write_result_json()`"), (as_flags, "`ovformer segment`")):
        server = server_for(folder, messages=messages)
        status, data = server.json("/api/results")
        assert status == 200
        broken = [row for row in data["results"] if row["id"] is None]
        assert len(broken) == 1 and "version 7" in broken[0]["error"] and expected in broken[0]["error"]
