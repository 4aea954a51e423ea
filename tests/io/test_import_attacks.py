"""Crafted and careless annotation exports: each is one AnnotationError, never a crash, a hang or a read elsewhere."""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ovformer_cli.app import app
from ovformer_core.errors import AnnotationError
from ovformer_core.io.annotation_formats import read_annotations

runner = CliRunner()


def cvat_xml(width: int = 8, height: int = 6, tracks: str = "") -> str:
    return (
        "<annotations><meta><task><name>clip</name><size>1</size><labels><label><name>cat</name></label></labels>"
        f"<original_size><width>{width}</width><height>{height}</height></original_size></task></meta>"
        f"{tracks}</annotations>"
    )


def datumaro(item: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    base = {"id": "frame_000000", "attr": {"frame": 0}, "image": {"size": [6, 8]}, "annotations": []}
    return {"categories": {"label": {"labels": [{"name": "cat"}]}}, "items": [item or {**base, **changes}]}


def test_a_nan_polygon_is_refused_before_pycocotools(tmp_path: Path) -> None:
    """pycocotools rasterises NaN coordinates into gigabytes, then crashes: refused first, in both formats."""
    xml = tmp_path / "annotations.xml"
    xml.write_text(
        cvat_xml(tracks='<track id="1" label="cat"><polygon frame="0" outside="0" points="nan,nan;2,2;3,1"/></track>')
    )
    with pytest.raises(AnnotationError, match="not all finite numbers"):
        read_annotations(xml, "cvat-video")
    polygon = {"id": 1, "type": "polygon", "label_id": 0, "points": [1, 1, float("inf"), 1, 4, 4]}
    document = tmp_path / "clip.json"
    document.write_text(json.dumps(datumaro(annotations=[polygon])))  # Infinity: not JSON either
    with pytest.raises(AnnotationError):
        read_annotations(document, "datumaro")


def test_an_export_folder_is_read_from_itself_only(tmp_path: Path) -> None:
    """unzip turns an archive's link entries into real links: a folder's link or FIFO is refused, not followed."""
    secret = tmp_path / "secret.txt"
    secret.write_text("db_password=hunter2\n")
    export = tmp_path / "export"
    (export / "clip" / "instances").mkdir(parents=True)
    ids = np.zeros((6, 8), np.uint16)
    ids[1:3, 1:3] = 1001
    Image.fromarray(ids).save(export / "clip" / "instances" / "frame_000000.png")
    (export / "clip" / "instances" / "labels.txt").symlink_to(secret)
    with pytest.raises(AnnotationError, match="is a symbolic link") as info:
        read_annotations(export, "mots")
    assert "hunter2" not in str(info.value)
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "annotations.xml")
    with pytest.raises(AnnotationError, match="is not a regular file"):
        read_annotations(fifo, "cvat-video")


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("damage", ["encrypted", "bad_name", "repeated", "bomb"])
def test_crafted_zips_are_one_line(tmp_path: Path, damage: str) -> None:
    ok = cvat_xml().encode()
    archive = tmp_path / "clip.cvat-video.zip"
    if damage == "repeated":
        with pytest.warns(UserWarning):  # zipfile warns of the duplicate while writing it
            _zip(archive, [("annotations.xml", ok), ("annotations.xml", ok)])
        expected = "two entries named annotations.xml"
    elif damage == "bomb":
        _zip(archive, [("annotations.xml", ok[:-14] + b" " * (80 * 1024**2) + ok[-14:])])
        expected = "like a zip bomb"
    else:
        _zip(archive, [("annotations.xml", ok)])
        data = bytearray(archive.read_bytes())
        local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
        if damage == "encrypted":
            data[local + 6] |= 1
            data[central + 8] |= 1
            expected = "without a password"
        else:  # the UTF-8 flag with a name that is not UTF-8
            for start, flags, name in ((local, 7, 30), (central, 9, 46)):
                data[start + flags] |= 0x08
                data[start + name] = 0xFF
            expected = "is not a complete zip archive"
        archive.write_bytes(bytes(data))
    with pytest.raises(AnnotationError, match=expected):
        read_annotations(archive, "cvat-video")


@pytest.mark.parametrize(
    "document",
    [
        datumaro(image={"size": [None, 8]}),
        datumaro(image={"size": ["6", 8]}),
        datumaro(annotations=[{"id": 1, "type": "mask", "label_id": 0, "rle": {"counts": "", "size": [6, 8, 1]}}]),
        datumaro(annotations=[{"id": 1, "type": "mask", "label_id": 0, "rle": {"counts": "", "size": 5}}]),
        datumaro(annotations=[None]),
        datumaro({"id": "f" + "9" * 5000, "image": {"size": [6, 8]}, "annotations": []}),
        "nested",
        "huge integer",
        "repeated key",
    ],
)
def test_malformed_datumaro_is_one_line(tmp_path: Path, document: Any) -> None:
    text = json.dumps(document) if isinstance(document, dict) else ""
    if document == "nested":
        text = '{"categories": {"label": {"labels": []}}, "items": ' + "[" * 5000 + "]" * 5000 + "}"
    elif document == "huge integer":
        text = json.dumps(datumaro()).replace('"frame": 0', '"frame": ' + "9" * 5000)
    elif document == "repeated key":
        text = json.dumps(datumaro())[:-1] + ', "items": []}'
    path = tmp_path / "clip.json"
    path.write_text(text)
    with pytest.raises(AnnotationError):
        read_annotations(path, "datumaro")


def test_a_frame_too_large_for_a_result_is_one_line(tmp_path: Path) -> None:
    xml = tmp_path / "annotations.xml"
    xml.write_text(cvat_xml(width=2_000_000, height=60))
    with pytest.raises(AnnotationError, match="frame size"):
        read_annotations(xml, "cvat-video")


def test_import_never_writes_over_its_own_input(tmp_path: Path) -> None:
    export = _zip(tmp_path / "clip.cvat-video.zip", [("annotations.xml", cvat_xml().encode())])
    before = export.read_bytes()
    outcome = runner.invoke(app, ["import", str(export), "--from", "cvat-video", "-o", str(export)])
    assert outcome.exit_code == 2 and "is one of the exports being imported" in outcome.output
    assert export.read_bytes() == before


@pytest.mark.parametrize("pattern", ["/etc/{video}/{frame}.jpg", "../{video}/{frame}.jpg", "same.jpg"])
def test_a_frame_pattern_evaluate_would_refuse_is_refused_at_once(tmp_path: Path, pattern: str) -> None:
    export = _zip(tmp_path / "clip.cvat-video.zip", [("annotations.xml", cvat_xml().encode())])
    out = tmp_path / "gt.json"
    outcome = runner.invoke(
        app, ["import", str(export), "--from", "cvat-video", "-o", str(out), "--frame-pattern", pattern]
    )
    assert outcome.exit_code == 2 and "frame pattern" in outcome.output and not out.exists()


def test_a_task_named_like_a_drive_and_an_empty_export(tmp_path: Path) -> None:
    xml = tmp_path / "annotations.xml"
    xml.write_text(cvat_xml().replace("<name>clip</name>", "<name>C:</name>", 1))
    outcome = runner.invoke(app, ["import", str(xml), "--from", "cvat-video", "-o", str(tmp_path / "gt.json")])
    assert outcome.exit_code == 2 and "video name 'C:'" in outcome.output and not (tmp_path / "gt.json").exists()
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"categories": {"label": {"labels": []}}, "items": []}))
    outcome = runner.invoke(app, ["import", str(empty), "--from", "datumaro", "-o", str(tmp_path / "gt.json")])
    assert outcome.exit_code == 2 and "no video in" in outcome.output and not (tmp_path / "gt.json").exists()


def test_labels_with_a_byte_order_mark_and_an_export_named_dot(tmp_path: Path, monkeypatch) -> None:
    export = tmp_path / "walk"
    (export / "instances").mkdir(parents=True)
    ids = np.zeros((6, 8), np.uint16)
    ids[1:3, 1:3] = 1001
    Image.fromarray(ids).save(export / "instances" / "frame_000000.png")
    (export / "instances" / "labels.txt").write_bytes("\ufeffcat\n".encode())
    monkeypatch.chdir(export)
    (video,) = read_annotations(".", "mots")
    assert video.video_name == "walk" and [t.category_name for t in video.tracks] == ["cat"]


def test_import_with_a_dataset_vocabulary_keeps_its_ids(tmp_path: Path) -> None:
    """`import --vocab GT.json` gives the ids `segment --vocab GT.json` gives: the dataset's own."""
    track = '<track id="1" label="dog"><polygon frame="0" outside="0" points="1,1;4,1;4,4"/></track>'
    xml = tmp_path / "annotations.xml"
    xml.write_text(cvat_xml(tracks=track).replace("<name>cat</name>", "<name>dog</name>"))
    vocab = tmp_path / "gt.json"
    categories = [{"id": 5, "name": "dog"}, {"id": 2, "name": "person"}]
    vocab.write_text(json.dumps({"videos": [], "annotations": [], "categories": categories}))
    out = tmp_path / "imported.json"
    outcome = runner.invoke(app, ["import", str(xml), "--from", "cvat-video", "--vocab", str(vocab), "-o", str(out)])
    assert outcome.exit_code == 0, outcome.output
    dataset = json.loads(out.read_text())
    assert sorted((c["id"], c["name"]) for c in dataset["categories"]) == [(2, "person"), (5, "dog")]
    assert [a["category_id"] for a in dataset["annotations"]] == [5]


def test_a_png_declaring_a_huge_frame_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    """A few hundred bytes may declare 12,000 x 12,000 16-bit pixels (288 MB): the header is checked first."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 12_000, 12_000, 16, 0, 0, 0, 0)  # 16-bit grayscale, under PIL's own limit
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")
    export = _zip(tmp_path / "walk.mots.zip", [("walk/instances/frame_000000.png", png)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's large-image warning would reach the user's terminal
        with pytest.raises(AnnotationError, match="frame size 12000x12000"):
            read_annotations(export, "mots")
