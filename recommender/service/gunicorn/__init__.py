"""gunicorn: the server (master, workers, the supervisor of the joiner and trainer processes beside them) and
the InlineWorker; the only package that imports gunicorn."""
