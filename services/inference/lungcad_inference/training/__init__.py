"""Training and evaluation (``lungcad train`` / ``lungcad evaluate``); imports torch lazily."""
