"""What the screens show, without Textual: the session, one run's state, row models, safe text."""
