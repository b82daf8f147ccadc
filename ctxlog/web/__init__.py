"""
Web capture: the WSGI and ASGI middleware that give each request its context.

Internal: import the public names from :mod:`ctxlog`.
"""
