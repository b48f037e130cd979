"""The ``spyglass`` command: the one place above both the headless console and the TUI.

``spyglass`` with no command (or ``tui``) and ``spyglass demo`` open the TUI; every other command
is the console's. Keeping the choice here lets ``console`` stay free of ``tui`` (an import
contract in ``make lint`` and tests/test_layering.py hold it).
"""
