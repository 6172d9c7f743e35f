"""The browse UI: a local, read-only web app over one archive (see app.py)."""
