"""Reading and writing: videos, results, overlays, atomic file writes."""
