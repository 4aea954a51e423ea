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


def test_library_functions_become_commands() -> None:
    assert as_flags("create one with `Vocabulary.save()`") == "create one with `ovformer vocab-encode`"
    assert as_flags("pass a file written by `write_result_json()`; or use `benchmark`='ytvis'") == (
        "pass a file written by `ovformer segment`; or use --benchmark ytvis"
    )
    assert as_flags("(or start from a recipe's config, `recipe()`)") == (
        "(or start from a recipe's config, `ovformer train --print-config r50-lvvis`)"
    )
    # A function without a command is left as it is.
    assert as_flags("call `Predictor.segment()`") == "call `Predictor.segment()`"
