"""``ovformer view``: a local web app to look at, correct and re-run results.

Modules: ``app`` (the FastAPI application and its routes), ``access`` (token and Host checks),
``served_files`` (which paths a request may name), ``results_index`` (the results of the served
folder), ``masks`` (track spans and masks per frame range), ``frames`` (decoded source frames),
``review`` (corrections and ``NAME.reviewed.json``), ``runs`` (the run queue), ``server`` (binding
and uvicorn). The pages are plain HTML/JS/CSS under ``static/``; nothing is built.

Needs the ``view`` extra: ``pip install "ovformer[view]"``.
"""
