"""Fixtures of the io tests: Datumaro, the independent reader and writer of the annotation-tool formats."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture
def datumaro(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The ``datumaro`` package (the ``test`` extra installs it; CI fails rather than skips without it).

    Datumaro 1.13 cannot read a ``<mask>`` inside a CVAT ``<track>``: it takes the frame size from the
    enclosing ``<image>``, which CVAT for video has none of (an AttributeError on None, its own
    ``use_track`` exports included). The fixture hands that one call the task's ``<original_size>``,
    which Datumaro has parsed already; the rest of its CVAT reader runs unchanged.
    """
    try:
        import datumaro
        from datumaro.plugins.data_formats.cvat import base
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("datumaro is not installed; the test extra installs it: pip install -e '.[test]'")
        pytest.skip("datumaro is not installed (pip install -e '.[test]')")

    parse_meta = base.CvatBase._parse_meta
    parse_shape = base.CvatBase._parse_shape_ann.__func__  # type: ignore[attr-defined]
    frame_size: dict[str, Any] = {}

    def meta_with_size(meta_root: Any) -> Any:
        categories, size, attribute_types = parse_meta(meta_root)
        frame_size["size"] = size
        return categories, size, attribute_types

    def shape_with_size(cls: Any, ann: Any, categories: Any, image: Any) -> Any:
        if image is None and frame_size.get("size"):
            height, width = frame_size["size"]
            image = {"height": height, "width": width}
        return parse_shape(cls, ann, categories, image)

    monkeypatch.setattr(base.CvatBase, "_parse_meta", staticmethod(meta_with_size))
    monkeypatch.setattr(base.CvatBase, "_parse_shape_ann", classmethod(shape_with_size))
    return datumaro
