"""Training is reproducible to the byte: the saved model holds no save time. (Running the
train stage again on the same data, params and code writes the same models/model.keras
and training log, so what dvc.lock records for train does not change: checked on
test_pipeline.py's forced retrain.)"""

from __future__ import annotations

import json
import zipfile

import pytest

pytestmark = pytest.mark.slow


def test_the_saved_model_holds_no_save_time(trained_project):
    with zipfile.ZipFile(trained_project / "models/model.keras") as saved:
        assert {entry.date_time for entry in saved.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert "date_saved" not in json.loads(saved.read("metadata.json"))
