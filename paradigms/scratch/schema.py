"""Settings of the scratch paradigm: those of the supervised recipe it is."""

from __future__ import annotations

from paradigms.models.schema import SupervisedRecipe


class Scratch(SupervisedRecipe):
    """``conf/paradigm/scratch.yaml`` (also every ``baseline`` of the other paradigms)."""
