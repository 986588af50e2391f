"""Scoring: exact-match QA, COCO caption metrics and continual-learning metrics over a score matrix."""
