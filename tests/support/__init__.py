"""Test fixtures (tiny real sources, servers, local-format dirs) shared by tests/ and benchmarks/,
kept out of the product package."""
