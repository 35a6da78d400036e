"""The asv and pytest-benchmark suites: thin adapters over the sepbench package (no layer, cost
or timing logic of their own). They time the same cases through sepbench's builders and timer."""
