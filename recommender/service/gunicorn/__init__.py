"""gunicorn: the server (master, workers, the joiner supervisor) and the InlineWorker; the only package that
imports gunicorn."""
