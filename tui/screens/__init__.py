"""One screen per file; each gets what it needs when constructed and posts messages to the App."""
