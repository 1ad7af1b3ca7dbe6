"""API endpoints: filled in by this session."""
