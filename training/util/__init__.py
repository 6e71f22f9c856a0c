"""Small helpers with one home each: atomic file writes and digests (:mod:`.files`), seeded
random generators (:mod:`.seeding`), and input validation with one error format
(:mod:`.validate`). Both ``training`` and ``interp`` (and the CLI) use these; nothing here
imports the rest of the project.
"""
