"""Template filters of the console (console_extras)."""
