"""
Web capture: what gives each request its context, for ASGI, WSGI and the framework glue.

The path of one request through this room::

    asgi.ASGIMiddleware / wsgi.WSGIMiddleware / ctxlog.django   read the request's raw values
      settings.Settings          the options, checked once when the middleware is built
      request.RequestFields      the one builder of a request's fields and holder:
        proxies.ClientIP           the client address behind trusted proxies
        traceparent                trace_id and span_id from a W3C traceparent header
        text                       decoding, and the caps of what is kept
      user                       where each framework keeps the user, and the one naming rule
      wsgi_response              a WSGI body iterated and closed with the context set
      access                     the access line, when asked for
      lifespan                   ASGI lifespan passed through, queues flushed at shutdown

Internal: import the public names from :mod:`ctxlog` (and :mod:`ctxlog.django`,
:mod:`ctxlog.flask`, :mod:`ctxlog.fastapi`).
"""
