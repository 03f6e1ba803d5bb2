"""Aligners and a diarizer made from bundled weights, for machines without the model hub."""
