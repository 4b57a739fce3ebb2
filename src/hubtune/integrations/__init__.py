"""Integrations with other tools.

- :mod:`hubtune.integrations.trackers`: ``hubtune run --log-to tensorboard,mlflow``
  (experiment trackers fed every told step, the incumbent and the exported model).
- :mod:`hubtune.integrations.ray_tune`: tune your own training function on Ray Tune
  with hubtune's meta-learned ``quicktune`` optimizer and freeze-thaw
  (``QuickTuneSearcher`` + ``FreezeThawScheduler``).

See ``docs/integrations.md``. Neither module is imported here: each needs its
optional library (``pip install 'hubtune[tensorboard]'``, ``'hubtune[mlflow]'``,
``'hubtune[ray]'``).
"""
