"""Who decides and who learns: ACT (``act``: the halting decision, targets and loss) and the
trainer that runs it (``trainer.ACTTrainer``)."""

from hrm_rl.agents.act import act_loss
from hrm_rl.agents.trainer import ACTTrainer

__all__ = ["ACTTrainer", "act_loss"]
