"""The note a fine-tuning run records about its base model's head: replaced for other class
names, kept on its shape alone (and said so) where the names are unknown, silent otherwise."""

from __future__ import annotations

from pathlib import Path

import timm
from safetensors.torch import save_file

from paradigms.finetune.paradigm import head_note
from paradigms.models.backbone import export_model

LOW, HIGH = ["0", "1", "2", "3", "4"], ["5", "6", "7", "8", "9"]


def test_the_note_says_why_the_head_was_replaced_or_kept(tmp_path: Path) -> None:
    model = timm.create_model("test_resnet", num_classes=5)
    export_model(model, tmp_path / "run", {"class_names": LOW})
    run = str(tmp_path / "run")
    assert "are not the data's" in head_note(run, 5, HIGH, head_kept=False)
    assert head_note(run, 5, LOW, head_kept=True) is None
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(plain))
    assert "class names are unknown" in head_note(str(plain), 5, HIGH, head_kept=True)
    assert "class names are unknown" in head_note(run, 5, None, head_kept=True)
    assert "does not fit" in head_note(str(plain), 10, None, head_kept=False)
