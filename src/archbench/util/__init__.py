"""archbench.util."""
