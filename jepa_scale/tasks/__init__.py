"""Tasks by name: what one optimizer step does and which columns it logs. Pretraining today; probes next."""
from jepa_scale.tasks.base import TASKS, NonFiniteTraining, Task
from jepa_scale.tasks import pretrain  # noqa: F401  (registers "pretrain")

__all__ = ["TASKS", "NonFiniteTraining", "Task"]
