"""The analyses of a run as experiments: disk -> run -> images -> tidy CSVs and figures.

Each module is the function behind one CLI command and one pipeline step (``cka``,
``patching``, ``circuits``); the computations themselves live in the :mod:`interp` library.
"""
