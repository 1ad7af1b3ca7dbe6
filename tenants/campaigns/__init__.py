"""Email marketing: segments, templates, campaigns sent exactly once, tracking and reports (issue 6)."""
