"""Settings of knowledge distillation (see ``paradigms.runner.validation``)."""

from __future__ import annotations

from paradigms.models.schema import Backbone, SupervisedRecipe
from paradigms.runner.validation import Schema, flag, number, whole


class TeacherSource(Schema):
    """The cached stage that trains the teacher when it has no weights."""

    max_epochs = whole(1, example=15)


class Distill(SupervisedRecipe):
    """``conf/paradigm/distill.yaml``."""

    teacher = Backbone  # the teacher's own backbone spec
    teacher_source = TeacherSource
    temperature = number(0, open_low=True, example=4.0)
    alpha = number(0, 1, example=0.5)
    feature_weight = number(0, example=0.0)
    cache_teacher = flag()
