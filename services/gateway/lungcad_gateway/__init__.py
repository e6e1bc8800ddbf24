"""LungCAD gateway: the async CT job API (FastAPI), the outbox relay and the sweeper.

Owns the Alembic migrations. Never imports torch or SimpleITK.
"""
