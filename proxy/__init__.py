"""Node proxy (a later issue)."""
