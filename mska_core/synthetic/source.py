"""The ``synthetic`` data source (a built-in plugin): the embedded corpus, the one source that renders
crops."""

from __future__ import annotations

from typing import Any

from mska_core.errors import DataError
from mska_core.hookspecs import hookimpl
from mska_core.records import DataSource


def open_synthetic(data: Any, layout: Any) -> Any:
    """The embedded synthetic corpus of ``[data.synthetic]`` (COCO-WholeBody only), whose crops are
    rendered from the clips' points (:func:`mska_core.synthetic.corpus.clip_crops`)."""
    from mska_core.synthetic.corpus import make_corpus

    if layout.name != "coco_wholebody":
        raise DataError(
            f"the synthetic corpus is in layout 'coco_wholebody', but model.layout is {layout.name!r}; "
            "set model.layout = \"coco_wholebody\" or give [data] source/path"
        )
    return make_corpus(data.synthetic)


@hookimpl
def mska_data_sources() -> list[DataSource]:
    return [DataSource(name="synthetic", open=open_synthetic,
                       description="the embedded synthetic corpus ([data.synthetic]); renders crops")]
