"""Inference engines behind one small interface: a stream of text deltas, then a finish."""
