"""The vocabulary every search speaks: Step/StepResult (:mod:`.steps`) and TaskContext/Candidate (:mod:`.context`).

It sits above ``core``, ``space`` and ``hub`` (a Step names a :class:`~hubtune.space.config.Config`)
and below everything that trains, replays or optimises.
"""
