"""The analysis layer: what the commands decide from measurements, above the trace and below
the engine. `stats` is the one answer to "is B slower than A" (gate, fix, tune and diff);
`compare` is the one profile comparator (diff and the gate's explanation)."""
