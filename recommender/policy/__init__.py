"""The Vowpal Wabbit policy: examples from features (examples.py), the VW seam (vw.py), the item cache,
sampling, the Policy (decide, learn, change exploration) and the versioned model store (docs/policy.md)."""
