"""Who decides and who learns: the ACT joint trainer (``ACTTrainer``)."""

from hrm_rl.agents.act_trainer import ACTTrainer, act_loss

__all__ = ["ACTTrainer", "act_loss"]
