"""The offline hub's search uses the surrogate specialised on offline-hub runs."""

from __future__ import annotations

import json

from hubtune.hub.published import OFFLINE_MODELS
from hubtune.surrogate.cache import (
    DEFAULT_SURROGATE_DIR,
    OFFLINE_SURROGATE_DIR,
    default_surrogate_dir,
    load_default_surrogate,
)


def test_offline_models_get_the_offline_surrogate_and_others_the_default():
    assert default_surrogate_dir(list(OFFLINE_MODELS)) == OFFLINE_SURROGATE_DIR
    assert default_surrogate_dir(["mobilenetv2_100"]) == OFFLINE_SURROGATE_DIR
    assert default_surrogate_dir(["mobilenetv2_100", "test_resnet"]) == DEFAULT_SURROGATE_DIR
    assert default_surrogate_dir(["test_resnet"]) == DEFAULT_SURROGATE_DIR
    assert default_surrogate_dir([]) == DEFAULT_SURROGATE_DIR


def test_offline_surrogate_loads_and_never_saw_the_demo_dataset():
    sur = load_default_surrogate(OFFLINE_SURROGATE_DIR)
    record = json.loads((OFFLINE_SURROGATE_DIR / "surrogate.json").read_text())["record"]
    assert record["continued_from"]["datasets"], "must continue the shipped surrogate"
    assert record["datasets"] and not any("fashion" in d.lower() for d in record["datasets"])
    assert set(record["cost_datasets"]) == set(record["datasets"])  # cost refit on these runs
    assert sur is load_default_surrogate(OFFLINE_SURROGATE_DIR)  # cached, loaded once
