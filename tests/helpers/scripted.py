"""A scripted optimizer for the runner tests: a fixed plan of steps, registered as a method."""

from __future__ import annotations

import time
from typing import Any

from hubtune.optim.registry import register_method, unregister_method
from hubtune.protocol.context import TaskContext
from hubtune.protocol.steps import Step, StepResult


class Scripted:
    """A fixed plan of steps (a real, if simple-minded, protocol implementation).

    Plan entries are ``(trial_id, epoch)``; ``"a#2"`` is another trial of candidate
    ``a``'s config. It records the budget shown at each ask and the results told.
    """

    def __init__(self, ctx: TaskContext, plan: list[tuple[str, int]], sleep: float = 0.0) -> None:
        self.configs = {c.trial_id: c.config for c in ctx.candidates}
        self.plan = list(plan)
        self.sleep = sleep
        self.budget_left: list[float | None] = []
        self.told: list[StepResult] = []

    def ask(self, budget_left: float | None = None) -> Step | None:
        if self.sleep:
            time.sleep(self.sleep)
        self.budget_left.append(budget_left)
        if not self.plan:
            return None
        tid, epoch = self.plan.pop(0)
        return Step(tid, self.configs[tid.split("#")[0]], epoch)

    def tell(self, result: StepResult) -> None:
        self.told.append(result)

    def state_dict(self) -> dict[str, Any]:
        return {"plan": self.plan}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plan = list(state["plan"])


class ScriptedMethods:
    """Registers :class:`Scripted` methods under fresh names; :meth:`close` unregisters them."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.names: list[str] = []

    def register(self, plan: list[tuple[str, int]], sleep: float = 0.0,
                 **kw: Any) -> tuple[str, list[Scripted]]:
        """A new method following ``plan``: (its name, the instances built so far)."""
        name = f"{self.prefix}_{len(self.names)}"
        made: list[Scripted] = []

        def factory(ctx: TaskContext) -> Scripted:
            made.append(Scripted(ctx, plan, sleep))
            return made[-1]

        register_method(name, factory, **kw)
        self.names.append(name)
        return name, made

    def close(self) -> None:
        for name in self.names:
            unregister_method(name)
