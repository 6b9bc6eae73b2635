"""Benchmarks that print JSON figures: training throughput and FLOP utilisation, training
memory against recurrence depth, and halting-env throughput.

Run them with ``hrm-rl bench {train,memory,env,all}`` (or the thin ``bench/*.py`` scripts in a
source checkout). Like the CLI, this package sits on top of every layer: it may import
``hrm_rl.agents`` and ``hrm_rl.envs``; nothing in the core imports it.

Modules:
    flops: analytic FLOPs of a training segment, FlopCounterMode cross-check, matmul peaks.
    train: puzzle-segments/s and model FLOP utilisation of the ACT trainer.
    memory: peak memory of one training step as H_cycles x L_cycles grows.
    env: segments/s of the halting environments.
"""
