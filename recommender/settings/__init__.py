"""Typed configuration: ``app`` (the whole AppConfig), one module per section (``policy``, ``service``,
``events`` for join and bus, ``trainer``; the feature store's section is ``features.config``), ``loading``
(YAML, ``${VAR}`` expansion, environment overrides, validation) and ``follow`` (re-reading a file while
running)."""
