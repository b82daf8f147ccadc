"""
The record: where a request's context meets a LogRecord, and how a record becomes a line.

Internal: import the public names from :mod:`ctxlog`.
"""
