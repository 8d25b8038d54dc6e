"""archbench.sweep."""
