"""The scoring service as a module-level WSGI application, for WSGI servers other than ``recommender serve``.

``recommender serve`` builds the app in each gunicorn worker itself; other servers (uWSGI, granian, bjoern,
gunicorn's stock workers) import a module and take its ``application``. This one builds it at import from
the config file named by ``BENCH_SERVICE_CONFIG``, without the joiner (``run_joiner=False``: the
benchmark runs ``recommender join``, or ``recommender serve``'s own joiner, beside it), and freezes what it
built out of the garbage collector's walks as ``recommender serve`` does. Import it after the server forks
(uWSGI ``--lazy-apps``): a VW workspace and Redis connections per process.

``python -m benchmarks.ours_wsgi --bjoern HOST PORT``: serve it with bjoern (one process, one thread; run
several with the same port: ``SO_REUSEPORT``).
"""

from __future__ import annotations

import gc
import os
import sys

from recommender.service import create_app
from recommender.settings.loading import load_config

CONFIG_PATH = os.environ["BENCH_SERVICE_CONFIG"]
application = create_app(load_config(CONFIG_PATH), config_path=CONFIG_PATH, run_joiner=False)
gc.freeze()

if __name__ == "__main__" and sys.argv[1:2] == ["--bjoern"]:
    import bjoern  # optional: installed on demand by benchmarks.bench_servers

    bjoern.run(application, sys.argv[2], int(sys.argv[3]), reuse_port=True)
