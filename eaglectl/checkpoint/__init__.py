"""Reading drafter checkpoints: layouts and resolution, lazy weight access, tensor names, metas, the target config.

This package's `__init__` stays import-light: shell completion reads `EPOCH_DIR` from here on every TAB.
"""

import re

EPOCH_DIR = re.compile(r"^epoch_(\d+)_step_(\d+)$")  # NeMo's checkpoint directories: epoch_<E>_step_<S>
