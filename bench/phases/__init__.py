"""One module per bench phase; :data:`bench.bench.PHASES` lists them in run order."""
