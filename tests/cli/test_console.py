"""The CLI shows library messages in its own words: parameters become flags."""

from __future__ import annotations

from ovformer_cli.console import as_flags


def test_parameters_become_flags() -> None:
    message = "CUDA out of memory; lower `window`, use `precision`='bf16', a smaller `min_size`, or `device`='cpu'"
    assert (
        as_flags(message)
        == "CUDA out of memory; lower --window, use --precision bf16, a smaller --min-size, or --device cpu"
    )
    assert as_flags("weights not found, or pass its path with `clip_weights`") == (
        "weights not found, or pass its path with --clip-weights"
    )
    # Config keys and quoted commands are not parameters of a command: left as they are.
    assert as_flags("set `run.device`='cpu'") == "set `run.device`='cpu'"
    assert as_flags("make them with `ovformer dataset from-results a.json --out DIR`") == (
        "make them with `ovformer dataset from-results a.json --out DIR`"
    )
