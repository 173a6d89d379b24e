"""Learners: SAC for continual learning and its methods."""
