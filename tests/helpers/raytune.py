"""The Ray Tune tests' trainable: a user's own training function with a checkpoint per epoch.

A linear softmax model on scikit-learn's 8x8 digits whose ``lr``, ``batch_size`` and
``weight_decay`` come from hubtune's configurations. It is deterministic: each epoch
is seeded by its number (so an epoch trained after a restore from a checkpoint is the
epoch an uninterrupted trial trains), and it reports its own cost
(``time_this_iter_s``, 1 s an epoch, which Ray keeps), so quicktune's cost model sees
the same numbers in every run. It reports ``resumed_from``: the epoch its checkpoint
stood at when this call started.

Ray's workers cannot import the tests package: register this module (and the test
module) with ``ray.cloudpickle.register_pickle_by_value`` before ``ray.init``.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def train(config: dict[str, Any]) -> None:
    """Train to ``config["max_epochs"]`` from the trial's checkpoint, reporting every epoch."""
    import torch
    from ray import tune
    from safetensors.torch import load_file, save_file
    from sklearn.datasets import load_digits

    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32) / 16.0
    y = torch.tensor(y)
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 10)
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"] * 10,
                          weight_decay=config["weight_decay"])
    start = 0
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as folder:
            model.load_state_dict(load_file(os.path.join(folder, "model.safetensors")))
            with open(os.path.join(folder, "state.json")) as f:
                start = json.load(f)["epoch"]
    for epoch in range(start + 1, config["max_epochs"] + 1):
        torch.manual_seed(epoch)
        for i in torch.randperm(500).split(config["batch_size"]):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()
        with torch.no_grad():
            acc = (model(x[1500:]).argmax(1) == y[1500:]).float().mean().item()
        with tempfile.TemporaryDirectory() as folder:
            save_file(model.state_dict(), os.path.join(folder, "model.safetensors"))
            with open(os.path.join(folder, "state.json"), "w") as f:
                json.dump({"epoch": epoch}, f)
            tune.report({"val_acc": acc, "epoch": epoch, "resumed_from": start,
                         "time_this_iter_s": 1.0},
                        checkpoint=tune.Checkpoint.from_directory(folder))
