"""Results: the records of a run, the SQLite store, the text/JSON/CSV outputs and the history."""
