"""One module per CLI command: each takes plain values (no click), calls the API or the package, and prints
with `sepbench.console`. A command returns its exit code; a refusal is a `SepbenchError`."""
