"""Sample checkpoints of every layout, and the demo that runs the main job on them."""
