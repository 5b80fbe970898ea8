"""The kfp v2 pipeline definition, its compiler and its runners (local and Kubeflow)."""
