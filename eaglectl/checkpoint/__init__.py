"""Reading drafter checkpoints: layouts and resolution, lazy weight access, tensor names, metas, the target config.

This package's `__init__` stays import-light: shell completion reads the checkpoint directory names from here on
every TAB.
"""

import re

EPOCH_DIR = re.compile(r"^epoch_(\d+)_step_(\d+)$")  # NeMo's checkpoint directories: epoch_<E>_step_<S>
LEGACY_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")  # SpecForge 0.1's end-of-epoch checkpoints: epoch_<E>
SPECFORGE_STEP_DIR = re.compile(r"^(.+)-step(\d+)$")  # SpecForge >= 0.2's saves: <run_id>-step<N>
