"""archbench.cli."""
