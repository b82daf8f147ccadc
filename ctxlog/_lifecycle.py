"""
The one registry of the threads and sockets ctxlog owns, and what happens to them at fork and exit.

A component that owns a thread or a socket (a delivery worker, a socket handler's connection, a
digest timer, a listener) registers itself with :func:`register`. It may define any of these
methods:

``before_fork(deadline)``
    In the parent, just before :func:`os.fork`: get to a state that a copy can inherit (a
    worker between records), waiting at most until ``deadline`` (a :func:`time.monotonic`
    time) for the forks of all components together.
``after_fork_in_parent()``
    In the parent, right after the fork: undo what ``before_fork`` did.
``after_fork_in_child()``
    In the child: forget the parent's threads and connections (they are not the child's), and
    start afresh.
``at_exit()``
    At interpreter exit, and when a forked :mod:`multiprocessing` child ends (it leaves through
    :func:`os._exit`, which skips exit handlers, after running its own finalizers): deliver
    what is held.

**Order.** ``before_fork`` and ``at_exit`` are called for the last registered component first,
``after_fork_in_parent`` and ``after_fork_in_child`` for the first registered first (the order
of :func:`atexit` and :func:`os.register_at_fork`). A component that delivers to others registers
after them, so it hands over what it holds before they are closed at exit, it is still before
they are at a fork, and they are ready again in the child before it starts delivering: a
:func:`ctxlog.nonblocking` handler registers when it starts, after the handlers it delivers to
were made, and a handler that owns a connection registers when it is made.

Components are held weakly: one that is garbage collected drops out. The process hooks are
installed by the first registration, never by ``import ctxlog``.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from typing import Final

from ctxlog._stderr import write_line

__all__ = ["FORK_WAIT", "components", "register", "unregister"]

#: The longest a fork waits for the components to be ready, in seconds.
FORK_WAIT: Final = 5.0

_components: weakref.WeakKeyDictionary[object, None] = weakref.WeakKeyDictionary()
#: Held from just before a fork until just after it, in both processes: a registration in
#: another thread waits, and the child's registry is never copied half-changed.
_lock = threading.RLock()
_installed: list[bool] = []


def register(component: object) -> None:
    """Have ``component``'s fork and exit methods called from now on (held weakly)."""
    with _lock:
        _components[component] = None
        if not _installed:
            _installed.append(True)
            atexit.register(_at_exit)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(
                    before=_before_fork,
                    after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child,
                )


def unregister(component: object) -> None:
    """Stop calling ``component``'s methods (nothing happens if it was not registered)."""
    with _lock:
        _components.pop(component, None)


def components() -> list[object]:
    """Return the registered components, in the order they registered."""
    with _lock:
        return list(_components)


def _call(method: str, *args: object, last_first: bool = False) -> None:
    """Call ``method`` of every component that has it, in registration order or reversed."""
    registered = components()
    for component in reversed(registered) if last_first else registered:
        hook = getattr(component, method, None)
        if hook is None:
            continue
        try:
            hook(*args)
        except Exception as error:  # one component's failure must not stop the others
            write_line(f"ctxlog: {method} of {component!r} failed: {error!r}")


def _before_fork() -> None:
    _lock.acquire()
    _call("before_fork", time.monotonic() + FORK_WAIT, last_first=True)


def _after_fork_in_parent() -> None:
    try:
        _call("after_fork_in_parent")
    finally:
        _lock.release()


def _after_fork_in_child() -> None:
    # The thread that forked goes on in the child and owns the lock there too (as logging's
    # own lock after a fork).
    try:
        _call("after_fork_in_child")
    finally:
        _lock.release()
    # A multiprocessing child started by fork leaves through os._exit(), which skips atexit;
    # multiprocessing runs its own finalizers first, so deliver there too. Its child start-up
    # clears the finalizers after this hook, then runs its after-fork callbacks: register there.
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None and any(hasattr(c, "at_exit") for c in components()):
        mp_util.register_after_fork(_after_fork_in_child, _finalize_with_multiprocessing)


def _finalize_with_multiprocessing(_: object) -> None:
    mp_util = sys.modules["multiprocessing.util"]
    mp_util.Finalize(None, _at_exit, exitpriority=100)


def _at_exit() -> None:
    _call("at_exit", last_first=True)
