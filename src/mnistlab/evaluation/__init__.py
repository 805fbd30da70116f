"""Metrics, evaluation of a checkpoint on a data set, and prediction on user images."""
