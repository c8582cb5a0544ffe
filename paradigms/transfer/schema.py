"""Settings of the transfer paradigm (see ``paradigms.runner.validation``)."""

from __future__ import annotations

from paradigms.models.schema import Head, SupervisedRecipe
from paradigms.runner.validation import one_of, whole


class Transfer(SupervisedRecipe):
    """``conf/paradigm/transfer.yaml``."""

    head = Head
    replace_last_blocks = whole(0, example=1)
    cache_features = one_of("auto", True, False)
