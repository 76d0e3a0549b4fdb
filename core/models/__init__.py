"""Model sources, loading, generation and token counting. Heavy libraries are imported inside functions."""
