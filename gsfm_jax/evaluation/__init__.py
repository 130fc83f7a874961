"""DAVIS J&F: the measures and the folder evaluation."""
