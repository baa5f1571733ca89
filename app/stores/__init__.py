"""Persistence behind small interfaces: the config store, the log store, the counters.

SQLite in the app dir is the embedded default (LMDB for the counters); PostgreSQL (and Redis for counters) serve
several instances. ``db.make_engine`` turns a store section of config.json into one
SQLAlchemy engine, so every store speaks to both databases the same way.
"""
