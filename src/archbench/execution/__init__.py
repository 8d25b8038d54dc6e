"""archbench.execution."""
