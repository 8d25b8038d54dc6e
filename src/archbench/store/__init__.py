"""archbench.store."""
