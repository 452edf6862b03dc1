"""The `recommender` command line: main.py (the entry point) and one module per command group."""
