"""The viewer's web application (FastAPI): two pages, their static files, and a small JSON API.

Pages: ``/`` (the index of results, and the run form) and ``/result/{id}`` (one video). API, all under
``/api/`` and all behind ``access.AccessGuard``:

- ``GET /api/results``: the index rows; ``GET /api/results/{id}``: one video's tracks, spans, review
  state and source video; ``GET /api/results/{id}/masks?start=&stop=``: RLE masks of a frame range;
  ``GET /api/results/{id}/frames/{position}``: a decoded source frame (JPEG);
- ``POST /api/results/{id}/video`` ``{"path"}``: point a result at its moved source video;
- ``POST /api/results/{id}/review`` ``{"edits", "revision"}``: save ``NAME.reviewed.json``;
- ``GET /api/videos``: videos that may be run or pointed at; ``PUT /api/uploads?name=``: upload one
  (raw body, size-limited, decoded once to check it is a video);
- ``GET /api/models``: models a run may use (the first call imports PyTorch);
- ``GET /api/runs``: the runs and their progress; ``POST /api/runs`` ``{"video", "vocabulary", "model", "threshold"}``.

Every failure is a 4xx (or, for a full disk, 507) with ``{"error": "<one line>"}``; the server goes on.
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ovformer_core.errors import (
    OutputError,
    OVFormerError,
    ResultsError,
    VideoError,
)
from ovformer_core.io.atomic import output_error
from ovformer_core.io.outputs import is_reviewed_path
from ovformer_core.io.video import VIDEO_SUFFIXES, open_source
from ovformer_core.view.access import TOKEN_HEADER, AccessGuard, is_loopback
from ovformer_core.view.frames import FrameStore
from ovformer_core.view.masks import MAX_FRAMES_PER_REQUEST, mask_range, track_table
from ovformer_core.view.results_index import LoadedVideo, ResultIndex
from ovformer_core.view.review import ReviewConflict, parse_edits, save_review
from ovformer_core.view.runs import ModelHolder, RunQueue, parse_vocabulary, segment_job
from ovformer_core.view.served_files import PathRefused, ServedFolder

log = logging.getLogger("ovformer")

#: Largest JSON body the API reads (a review of 10,000 edits fits easily).
MAX_JSON_BODY = 4 * 1024 * 1024
#: Default upload limit.
DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class ViewerSettings:
    """Everything a viewer server is started with.

    Attributes:
        folder: the served folder (results read from it, uploads and run results written into it).
        only: list only these result files (``ovformer view RESULT.json``), or None for all.
        video_roots: more folders whose videos may be shown (read only).
        host: address bound; not loopback means every request needs the token.
        token: the access token.
        model: model name runs use (a release name; its config is used unless the weights carry one).
        weights: its weights file (default: the cache).
        clip_weights: CLIP ViT-B/32 weights file (default: the cache).
        device: ``cpu``, ``cuda``...; default cuda when available.
        allow_download: whether missing weights may be downloaded.
        min_size: shortest side fed to the network in runs (None: the model's own).
        max_upload_bytes: upload size limit.
        messages: shows a library message in the words of whoever started the server (the CLI passes
            ``ovformer_cli.console.as_flags``: flags for parameters, commands for functions).
    """

    folder: Path
    token: str
    only: tuple[Path, ...] | None = None
    video_roots: tuple[Path, ...] = ()
    host: str = "127.0.0.1"
    model: str = "r50-lvvis"
    weights: Path | None = None
    clip_weights: Path | None = None
    device: str | None = None
    allow_download: bool = True
    min_size: int | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    messages: Callable[[str], str] = str


class _Refused(Exception):
    """A request refused with a status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _status_of(err: OVFormerError) -> int:
    if isinstance(err, PathRefused):
        return 403
    if isinstance(err, ReviewConflict):
        return 409
    if isinstance(err, (ResultsError, VideoError)):
        return 422
    if isinstance(err, OutputError):
        return 507
    return 400


def _static_folder() -> Path:
    return Path(str(resources.files("ovformer_core.view") / "static"))


def _page(name: str, token: str, result_id: str = "") -> HTMLResponse:
    text = (_static_folder() / name).read_text(encoding="utf-8")
    text = text.replace("{{token}}", html.escape(token)).replace("{{result_id}}", html.escape(result_id))
    return HTMLResponse(text, headers={"Cache-Control": "no-store"})


async def _json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object body, or a 4xx ``_Refused``."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise _Refused(415, "send the request body as JSON (Content-Type: application/json)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BODY:
            raise _Refused(413, f"the request body is over {MAX_JSON_BODY // 1024**2} MB; send fewer edits at once")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _Refused(400, f"the request body is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise _Refused(400, "the request body must be a JSON object")
    return data


def _int_param(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Refused(400, f"'{name}' must be an integer")
    return value


class Viewer:
    """The state behind the app: served folder, index, decoders, relocated videos, runs.

    Args:
        settings: how the server was started.
    """

    def __init__(self, settings: ViewerSettings) -> None:
        self.settings = settings
        self.folder = ServedFolder(settings.folder, settings.video_roots)
        self.index = ResultIndex(self.folder, settings.only)
        self.frames = FrameStore()
        self.relocated: dict[tuple[Path, int], Path] = {}
        self.holder = ModelHolder(self._load_model)
        self.runs = RunQueue(segment_job(self.holder, settings.min_size), self.folder.root, self.index.add)

    def start_path(self) -> str:
        """The page to open first: the result itself for ``ovformer view RESULT.json`` with one video."""
        only = self.index.only
        if only is not None and len(only) == 1 and len(self.index.read(only[0])) == 1:
            return f"/result/{self.index.file_id(only[0])}-0"
        return "/"

    def _load_model(self, name: str) -> Any:
        from ovformer_core.predictor import load_model

        weights = self.settings.weights if name == self.settings.model else None
        return load_model(
            name,
            weights,
            self.settings.clip_weights,
            device=self.settings.device,
            allow_download=self.settings.allow_download,
            progress=False,
        )

    def models(self) -> list[str]:
        """The configured model, then the releases whose weights are already in the cache."""
        if self.settings.weights is not None:
            return [self.settings.model]
        from ovformer_core.checkpoints import MODEL_RELEASES
        from ovformer_core.weights import ovformer_home

        names = [self.settings.model]
        home = ovformer_home()
        for name, release in MODEL_RELEASES.items():
            if name not in names and (home / release.weights.filename).is_file():
                names.append(name)
        return names

    def locate(self, result_id: str) -> tuple[Path, int]:
        try:
            return self.index.locate(result_id)
        except KeyError:
            raise _Refused(404, f"no result {result_id!r} (moved or deleted?); go back to the index") from None

    def video(self, result_id: str) -> LoadedVideo:
        self.locate(result_id)
        try:
            return self.index.video(result_id)
        except KeyError:
            raise _Refused(404, f"no result {result_id!r} (moved or deleted?); go back to the index") from None

    def source(self, video: LoadedVideo) -> tuple[Path | None, str | None]:
        """The source video to show, or None and why not."""
        override = self.relocated.get((video.path, video.video_index))
        if override is not None:
            return override, None
        recorded = Path(video.result.video_path)
        candidates = [recorded] if recorded.is_absolute() else [video.path.parent / recorded, Path.cwd() / recorded]
        for candidate in candidates:
            if not os.path.lexists(candidate):
                continue
            if self.folder.contains(candidate, video=True):
                return Path(os.path.realpath(candidate)), None
            return None, (
                f"the source video {recorded} lies outside the folders this viewer may read; "
                f"restart with --videos {Path(os.path.realpath(candidate)).parent}, or pick the video below"
            )
        return None, f"the source video {recorded} is not there (moved or deleted?); pick it below"

    def details(self, video: LoadedVideo) -> dict[str, Any]:
        result = video.result
        source, problem = self.source(video)
        return {
            "id": video.result_id,
            "file": self.folder.display(video.path),
            "read_only": is_reviewed_path(video.path),
            "video_name": result.video_name,
            "video_path": result.video_path,
            "width": result.width,
            "height": result.height,
            "num_frames": result.num_frames,
            "fps": result.fps,
            "frame_indices": result.frame_indices,
            "categories": result.categories,
            "model_id": result.model_id,
            "tracks": track_table(result, video.present),
            "review": self.in_words(self.index.review_state(video.path, video.video_index).to_dict(), "problem"),
            "video": {
                "available": source is not None,
                "path": self.folder.display(source) if source is not None else None,
                "message": problem,
            },
        }

    def in_words(self, row: dict[str, Any], key: str) -> dict[str, Any]:
        """``row`` with its message under ``key`` (if any) in the words of ``settings.messages``."""
        if isinstance(row.get(key), str):
            return {**row, key: self.settings.messages(row[key])}
        return row

    def relocate(self, video: LoadedVideo, requested: Any) -> Path:
        """Point ``video`` at another source; it must be readable and match the result's frame size."""
        if not isinstance(requested, str):
            raise _Refused(400, "'path' must be the video's path as the list shows it")
        path = self.folder.resolve(requested, video=True)
        source = open_source(path)
        size = (source.info.width, source.info.height)
        if size != (video.result.width, video.result.height):
            raise _Refused(
                422,
                f"{requested} is {size[0]}x{size[1]} but the result's masks are "
                f"{video.result.width}x{video.result.height}; pick the video the result was made from",
            )
        self.relocated[(video.path, video.video_index)] = path
        return path


def create_app(settings: ViewerSettings) -> FastAPI:
    """The viewer application for ``settings`` (serve it with uvicorn; see ``view.server``)."""
    viewer = Viewer(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        viewer.runs.stop()
        viewer.frames.close()

    app = FastAPI(title="ovformer view", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.viewer = viewer
    app.middleware("http")(AccessGuard(settings.token, is_loopback(settings.host)))
    app.mount("/static", StaticFiles(directory=_static_folder()), name="static")

    @app.exception_handler(_Refused)
    async def refused(request: Request, err: _Refused) -> JSONResponse:
        return JSONResponse({"error": settings.messages(str(err))}, status_code=err.status)

    @app.exception_handler(OVFormerError)
    async def user_error(request: Request, err: OVFormerError) -> JSONResponse:
        return JSONResponse({"error": settings.messages(str(err))}, status_code=_status_of(err))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = err.detail if isinstance(err.detail, str) else "bad request"
        if err.status_code == 404 and message == "Not Found":
            message = f"nothing at {request.url.path}; go back to the index"
        return JSONResponse({"error": message}, status_code=err.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = err.errors()
        first = problems[0] if problems else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid value')}"}, status_code=400)

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        return JSONResponse({"error": f"internal error ({type(err).__name__}); see the server log"}, status_code=500)

    @app.get("/", include_in_schema=False)
    def index_page() -> HTMLResponse:
        return _page("index.html", settings.token)

    @app.get("/result/{result_id}", include_in_schema=False)
    def result_page(result_id: str) -> HTMLResponse:
        viewer.locate(result_id)  # 404 JSON for an unknown id; the page itself asks for the result
        return _page("result.html", settings.token, result_id)

    @app.get("/api/results")
    def list_results() -> dict[str, Any]:
        rows = [viewer.in_words(row, "error") for row in viewer.index.summaries()]
        rows = [
            {**row, "review": viewer.in_words(row["review"], "problem")} if "review" in row else row for row in rows
        ]
        return {"folder": str(viewer.folder.root), "results": rows}

    @app.get("/api/results/{result_id}")
    def result_details(result_id: str) -> dict[str, Any]:
        return viewer.details(viewer.video(result_id))

    @app.get("/api/results/{result_id}/masks")
    def masks(result_id: str, start: int, stop: int) -> dict[str, Any]:
        video = viewer.video(result_id)
        if start < 0 or stop <= start or stop - start > MAX_FRAMES_PER_REQUEST:
            raise _Refused(400, f"ask for 1 to {MAX_FRAMES_PER_REQUEST} frames with 0 <= start < stop")
        if start >= video.result.num_frames:
            raise _Refused(404, f"the result has {video.result.num_frames} frames; start is beyond them")
        return {"start": start, "frames": mask_range(video.result, video.present, start, stop)}

    @app.get("/api/results/{result_id}/frames/{position}")
    def frame(result_id: str, position: int) -> Response:
        video = viewer.video(result_id)
        if not 0 <= position < video.result.num_frames:
            raise _Refused(404, f"the result has {video.result.num_frames} frames; there is no frame {position}")
        source, problem = viewer.source(video)
        if source is None:
            raise _Refused(404, problem or "the source video is not available")
        data = viewer.frames.jpeg(source, video.result.frame_indices[position])
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.post("/api/results/{result_id}/video")
    async def relocate(result_id: str, request: Request) -> dict[str, Any]:
        body = await _json_object(request)
        video = viewer.video(result_id)
        await run_in_threadpool(viewer.relocate, video, body.get("path"))
        return viewer.details(video)["video"]

    @app.post("/api/results/{result_id}/review")
    async def save(result_id: str, request: Request) -> dict[str, Any]:
        body = await _json_object(request)
        video = viewer.video(result_id)
        if is_reviewed_path(video.path):
            raise _Refused(409, "this reviewed copy has no original next to it; it cannot be reviewed again")
        edits = parse_edits(body.get("edits"))
        revision = _int_param(body.get("revision"), "revision")
        moved = viewer.relocated.get((video.path, video.video_index))
        saved = await run_in_threadpool(
            save_review, video.path, video.video_index, edits, revision, str(moved) if moved is not None else None
        )
        return {
            "file": viewer.folder.display(saved.path),
            "revision": saved.revision,
            "time": saved.time,
            "tracks": saved.tracks,
        }

    @app.get("/api/videos")
    def videos(all: bool = False) -> dict[str, Any]:
        return {"videos": viewer.folder.list_videos(include_video_roots=all)}

    @app.put("/api/uploads")
    async def upload(request: Request, name: str = "") -> dict[str, Any]:
        limit = settings.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _Refused(413, f"the file is {int(declared) / 1e6:.1f} MB, over the {limit / 1e6:.0f} MB upload limit")
        stem, suffix = viewer.folder.upload_name(name)
        received = 0
        too_large = f"the upload is over the {limit / 1e6:.0f} MB limit; send a shorter video"
        with viewer.folder.staged_upload() as staged:
            try:
                with staged.open("wb") as handle:
                    async for chunk in request.stream():
                        received += len(chunk)
                        if received > limit:
                            raise _Refused(413, too_large)
                        handle.write(chunk)
            except OSError as err:
                raise output_error(staged.parent, err) or err from None
            if received == 0:
                raise _Refused(400, "the upload is empty; choose a video file")
            try:
                await run_in_threadpool(open_source, staged)
            except VideoError:
                raise _Refused(415, f"{name} is not a video that can be decoded; upload a video file") from None
            target = viewer.folder.claim_upload(staged, stem, suffix)
        return {"video": viewer.folder.display(target), "bytes": received}

    @app.get("/api/runs")
    def runs() -> dict[str, Any]:
        return {"runs": [viewer.in_words(job, "error") for job in viewer.runs.jobs()]}

    @app.get("/api/models")
    def models() -> dict[str, Any]:
        return {"models": viewer.models()}

    @app.post("/api/runs")
    async def start_run(request: Request) -> dict[str, Any]:
        body = await _json_object(request)
        requested = body.get("video")
        if not isinstance(requested, str):
            raise _Refused(400, "'video' must be a video's path as the list shows it")
        path = viewer.folder.resolve(requested)
        if not path.is_file() or path.suffix.lower() not in VIDEO_SUFFIXES:
            raise _Refused(404, f"{requested} is not a video file in the served folder; pick one from the list")
        classes = parse_vocabulary(body.get("vocabulary"))
        model = body.get("model", settings.model)
        if model not in viewer.models():
            raise _Refused(400, f"unknown model {model!r}; pick one of {', '.join(viewer.models())}")
        threshold = body.get("threshold", 0.3)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise _Refused(400, "'threshold' must be a number from 0 to 1")
        job = viewer.runs.submit(path, viewer.folder.display(path), classes, model, float(threshold))
        return job.to_dict()

    return app


__all__ = ["TOKEN_HEADER", "ViewerSettings", "create_app"]
