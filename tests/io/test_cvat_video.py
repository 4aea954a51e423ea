"""CVAT for video 1.1: mask encoding, the XML ovformer writes, and how CVAT's files are read."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from ovformer_core.errors import AnnotationError, OutputError
from ovformer_core.io.cvat_video import (
    cvat_to_mask,
    cvat_video_xml,
    mask_to_cvat,
    parse_cvat_video,
    read_cvat_video,
    write_cvat_video,
)
from ovformer_core.io.results import Track, VideoResult
from tests.io.track_fixtures import assert_same_tracks, synthetic_result, visible_tracks


@pytest.mark.parametrize("seed", range(5))
def test_mask_encoding_round_trips(seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    mask = rng.random((height, width)) > 0.5
    mask[int(rng.integers(height)), int(rng.integers(width))] = True
    attrib = mask_to_cvat(mask)
    runs = [int(v) for v in attrib["rle"].split(",")]
    assert sum(runs) == int(attrib["width"]) * int(attrib["height"])
    assert np.array_equal(cvat_to_mask(attrib, height, width, "test"), mask)


def test_mask_encoding_is_cvats_row_major_box() -> None:
    mask = np.zeros((4, 6), dtype=bool)
    mask[1, 2:4] = True
    mask[2, 3] = True
    # box: left 2, top 1, 2x2; row-major [1 1 / 0 1]: no leading background run (0), 2 on, 1 off, 1 on
    assert mask_to_cvat(mask) == {"rle": "0, 2, 1, 1", "left": "2", "top": "1", "width": "2", "height": "2"}


def test_xml_round_trip_keeps_tracks_scores_and_frames() -> None:
    result = synthetic_result()
    back = parse_cvat_video(cvat_video_xml(result), "test.xml", "fallback")
    assert back.video_name == "clip" and back.frame_indices == result.frame_indices
    assert_same_tracks(visible_tracks(back), visible_tracks(result))
    assert {t.track_id: t.score for t in back.tracks} == {1: 0.9, 2: 0.5, 5: 0.95, 7: 0.3}
    assert [c["name"] for c in back.categories] == ["cat", "dog", "person"]  # the labels of the tracks


def test_xml_meta_and_gap_markers() -> None:
    text = cvat_video_xml(synthetic_result()).decode()
    assert "<size>7</size>" in text and "<start_frame>4</start_frame>" in text and "<stop_frame>22</stop_frame>" in text
    assert "<frame_filter>step=3</frame_filter>" in text and "<width>17</width>" in text
    assert "<source>clip.mp4</source>" in text
    # track 2 is seen at frames 7, 10 and 19: it leaves the view at 13 (its empty mask) and at 22;
    # track 5 is seen at 4 and 13: it leaves at 7 and 16; tracks 1 and 7 run to the end
    assert text.count('outside="1"') == 4
    assert text.count('frame="13" keyframe="1" outside="1"') == 1


def test_write_is_an_atomic_deterministic_zip(tmp_path: Path) -> None:
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    write_cvat_video(first, synthetic_result())
    write_cvat_video(second, synthetic_result())
    assert first.read_bytes() == second.read_bytes()
    assert zipfile.ZipFile(first).namelist() == ["annotations.xml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "b.zip"]


def test_unevenly_spaced_frames_are_refused() -> None:
    track = Track.from_masks(1, 0, "cat", 1, 0.5, np.ones((3, 2, 2), dtype=bool))
    result = VideoResult("v", "", 1, 2, 2, 3, 1.0, [0, 1, 5], [track], [{"id": 1, "name": "cat"}])
    with pytest.raises(OutputError, match="evenly spaced"):
        cvat_video_xml(result)


CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><name>walk</name><size>4</size><mode>interpolation</mode><start_frame>0</start_frame>
    <stop_frame>3</stop_frame><frame_filter></frame_filter>
    <labels><label><name>person</name></label><label><name>bike</name></label></labels>
    <original_size><width>8</width><height>6</height></original_size></task></meta>
  <track id="0" label="person" source="manual">
    <polygon frame="0" keyframe="1" outside="0" occluded="0" points="1.00,1.00;5.00,1.00;5.00,4.00;1.00,4.00"
      z_order="0"></polygon>
    <polygon frame="1" keyframe="0" outside="0" occluded="1" points="2.00,1.00;6.00,1.00;6.00,4.00;2.00,4.00"
      z_order="0"></polygon>
    <polygon frame="2" keyframe="1" outside="1" occluded="0" points="2.00,1.00;6.00,1.00;6.00,4.00;2.00,4.00"
      z_order="0"></polygon>
  </track>
  <track id="1" label="bike" source="manual">
    <mask frame="3" keyframe="1" outside="0" occluded="0" rle="1, 2, 1" left="7" top="2" width="1" height="4"
      z_order="0"></mask>
  </track>
</annotations>
"""


def test_reads_what_cvat_writes_polygons_interpolation_and_ids_from_zero() -> None:
    result = parse_cvat_video(CVAT_XML.encode(), "walk.xml", "fallback")
    assert result.video_name == "walk" and (result.height, result.width) == (6, 8)
    assert result.frame_indices == [0, 1, 2, 3]
    person, bike = result.tracks
    # CVAT numbers tracks from 0: every id moves up by one
    assert (person.track_id, person.category_name, bike.track_id, bike.category_name) == (1, "person", 2, "bike")
    assert [rle is not None for rle in person.segmentations] == [True, True, False, False]
    assert person.mask(0)[1:4, 1:5].all() and person.mask(0).sum() == 12
    assert bike.mask(3)[3:5, 7].all() and bike.mask(3).sum() == 2
    assert person.score == 1.0


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ('label="bike" source', 'label="boat" source', "track 1 has label 'boat', which the file does not declare"),
        ('left="7"', 'left="8"', "track 1 frame 3: mask box left=8 top=2 1x4 lies outside the 8x6 frame"),
        ('rle="1, 2, 1"', 'rle="1, 2, 2"', "track 1 frame 3: mask rle covers 5 pixels, not its 1x4 box"),
        ('rle="1, 2, 1"', 'rle="1, x, 1"', "track 1 frame 3: a mask needs integer rle"),
        ("5.00,1.00;5.00,4.00", "9.50,1.00;5.00,4.00", "track 0 frame 0: polygon reaches (9.5, 4)"),
        (
            "<mask frame",
            '<box frame="2" outside="0" xtl="1" ytl="1" xbr="2" ybr="2"/><mask frame',
            "a <box> carries no mask",
        ),
        ('<mask frame="3"', '<mask frame="9"', "track 1: a shape at frame 9 is not one of the task's frames (0..3)"),
        ('frame="1" keyframe="0"', 'frame="0" keyframe="0"', "track 0: two shapes at frame 0"),
        ("<size>4</size>", "", "<meta> has no <size>"),
        ("<original_size><width>8</width>", "<original_size>", "<meta> has no <width>"),
        ("</meta>", '</meta><image id="0" name="a.png"/>', "is 'CVAT for images'"),
        ("<meta><task>", "<meta><project/><task>", "is a CVAT project export"),
        ("</annotations>", "", "is not well-formed XML"),
        ("<name>walk</name>", "<name>../../etc</name>", "video name '../../etc' cannot name a folder of frames"),
        ("<width>8</width>", "<width>40000000</width>", "frame size 40000000x6 is not a video frame ovformer can hold"),
        ("<size>4</size>", "<size>99999999999</size>", "the task has 99999999999 frames"),
    ],
)
def test_bad_files_are_one_line_naming_the_entry(old: str, new: str, needle: str) -> None:
    assert old in CVAT_XML
    with pytest.raises(AnnotationError) as caught:
        parse_cvat_video(CVAT_XML.replace(old, new).encode(), "walk.xml", "fallback")
    message = str(caught.value)
    assert needle in message and "\n" not in message and message.startswith("walk.xml")


def test_a_truncated_zip_names_the_archive(tmp_path: Path) -> None:
    path = tmp_path / "walk.cvat-video.zip"
    write_cvat_video(path, synthetic_result())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AnnotationError, match=r"walk.cvat-video.zip is not a complete zip archive .* truncated"):
        read_cvat_video(path)


def test_a_damaged_entry_is_named(tmp_path: Path) -> None:
    path = tmp_path / "walk.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("annotations.xml", CVAT_XML * 20)
    data = bytearray(path.read_bytes())
    data[60:90] = b"\x00" * 30  # inside the compressed data; the central directory is intact
    path.write_bytes(bytes(data))
    with pytest.raises(AnnotationError, match=r"walk.zip:annotations.xml is damaged or truncated"):
        read_cvat_video(path)


def test_reads_a_folder_or_the_bare_xml(tmp_path: Path) -> None:
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "annotations.xml").write_text(CVAT_XML)
    (tmp_path / "walk.xml").write_text(CVAT_XML)
    assert len(read_cvat_video(tmp_path / "export").tracks) == 2
    assert len(read_cvat_video(tmp_path / "walk.xml").tracks) == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnnotationError, match="empty holds no XML file"):
        read_cvat_video(tmp_path / "empty")
    with pytest.raises(AnnotationError, match="missing.zip does not exist"):
        read_cvat_video(tmp_path / "missing.zip")
