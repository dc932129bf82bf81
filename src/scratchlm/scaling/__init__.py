"""Predictable scaling: the ladder of small runs, the law fitted to it, the prediction."""
