"""Small shared widgets and session helpers used by the pages."""
