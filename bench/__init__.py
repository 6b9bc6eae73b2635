"""Benchmarks that print JSON figures: training throughput and FLOP utilisation, training
memory against recurrence depth, halting-env throughput, a profile of the training step,
and the time-to-accuracy of training recipes; plus the puzzle-generator timings.

Run them with ``hrm-rl bench {train,memory,env,profile,recipe,all}`` (the CLI imports a
benchmark only when it runs it) or ``python bench/sudoku_generator.py`` /
``python bench/maze_generator.py``. Installed as ``hrm_rl.bench`` (the ``bench/`` folder of
a checkout). This package sits on top of every layer: it may import ``hrm_rl.agents`` and
``hrm_rl.envs``; nothing else imports it. Research experiments that are not benchmarks live
in ``scripts/experiments/``; FLOP counting is ``hrm_rl.model.flops``.

Modules:
    train: puzzle-segments/s and model FLOP utilisation of the ACT trainer.
    memory: peak memory of one training step as H_cycles x L_cycles grows.
    env: segments/s of the halting environments (live and replayed).
    profile: where a tiny-config training step spends its time (torch.profiler).
    recipe: time-to-accuracy of recipe variants on 6x6 Sudoku, chosen on a validation split.
    variants: the variant tables and options shared by recipe-style comparisons.
"""
