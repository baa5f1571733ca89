"""One blueprint per API surface; each parses, calls the engine, and formats."""
