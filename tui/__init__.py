"""The Textual front end over ``console/``.

``app`` (the App: navigation, launching, the messages screens post) sits over ``signing`` (the
signing and passphrase loop), over ``screens/`` (one screen per file), over ``widgets/``, over
``model/`` (session, run state, row models, safe text; no Textual). pyproject's import contract
holds that order.
"""
