"""archbench.engine."""
