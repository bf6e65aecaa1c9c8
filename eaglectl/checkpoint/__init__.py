"""Reading drafter checkpoints: layouts and resolution, lazy weight access, tensor names, metas, the target config."""
