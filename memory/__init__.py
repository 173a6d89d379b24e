"""Memories that agents store into and recall from."""
