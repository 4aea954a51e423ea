"""Reading a JSON input (ground truth or results) with one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ovformer_core.errors import ResultsError


def read_json_file(path: str | os.PathLike[str], what: str) -> Any:
    """Parse the JSON file at ``path``; ``what`` names it in errors ("ground truth", "results").

    Raises:
        ResultsError: the file is missing, unreadable or not valid JSON.
    """
    file = Path(path)
    try:
        text = file.read_bytes()
    except FileNotFoundError:
        raise ResultsError(f"{what} file {file} does not exist; check the path") from None
    except OSError as err:
        raise ResultsError(f"cannot read {what} file {file}: {err.strerror or err}") from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsError(f"{what} file {file} is not valid JSON ({err}); regenerate it") from None
