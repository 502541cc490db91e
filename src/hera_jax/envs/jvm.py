"""The Java simulators' JVMs start with constant identity hashes, so one JVM can be reused between episodes.

ScienceWorld and TextWorldExpress iterate their object sets in JVM identity-hash order. With the JVM's default
hashes that order follows everything the JVM did before (loading other tasks included), and so did the gold path's
choices (which plant, which cup), random draws (a thermometer's reading) and TWC's valid actions: an episode's
records depended on what its simulator ran earlier, and every episode needed a fresh JVM (slow to start). With
`-XX:hashCode=2` every identity hash is the same constant, the order follows insertion alone, and a reused JVM gives
the same records as a fresh one (tests/test_engine.py). What reuse saves, and what a step costs more with
colliding hash buckets, is measured in benchmarks/RESULTS.md ("Constant JVM identity hashes").

Both packages start their JVM with py4j's `launch_gateway`, imported into their module, and take no JVM options;
`constant_identity_hashes(module)` wraps that name once so every JVM the module starts gets the options (and a
bounded heap, since a JVM now lives for many episodes).
"""

from __future__ import annotations

import functools
import logging
import threading
from types import ModuleType
from typing import Any

from hera_jax.envs.base import register_simulator_process

# -Xmx1g: a reused ScienceWorld JVM's heap grew to 1.3 GB resident after ~50 episodes under the default limit (a
# quarter of RAM), and 8 simulators + 2 Ray workers ran a 24 GB machine out of memory.
JVM_OPTIONS = ("-XX:+UnlockExperimentalVMOptions", "-XX:hashCode=2", "-Xmx1g")
_lock = threading.Lock()


class _LostGatewayFilter(logging.Filter):
    """Drops py4j's log records about a connection to a JVM that has gone. py4j logs them (some on the root logger)
    and then raises, and the raise is what the engine handles; when a Ctrl-C stops the JVMs with the process, they
    would print a hundred lines of tracebacks around the one-line "interrupted" message."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_py4j = record.name.startswith("py4j") or record.pathname.replace("\\", "/").find("/py4j/") >= 0
        lost = isinstance(record.exc_info[1], (ConnectionError, OSError)) if record.exc_info else False
        lost = lost or "Py4JNetworkError" in repr(record.exc_info[1] if record.exc_info else "")
        return not (from_py4j and (lost or "connect to the Java server" in record.getMessage()))


_FILTER = _LostGatewayFilter()


def quiet_lost_gateways() -> None:
    """Install `_LostGatewayFilter` on the loggers py4j writes to (idempotent)."""
    for logger in (logging.getLogger(), logging.getLogger("py4j"), logging.getLogger("py4j.java_gateway"),
                   logging.getLogger("py4j.clientserver")):
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def constant_identity_hashes(module: ModuleType) -> None:
    """Make `module.launch_gateway` start JVMs with `JVM_OPTIONS` (idempotent, thread-safe); py4j's logs about a
    JVM that has gone are dropped (`quiet_lost_gateways`)."""
    quiet_lost_gateways()
    with _lock:
        launch = module.launch_gateway
        if getattr(launch, "hera_jvm_options", None) == JVM_OPTIONS:
            return

        @functools.wraps(launch)
        def launch_gateway(*args: Any, javaopts: Any = (), return_proc: bool = False, **kwargs: Any) -> Any:
            port, process = launch(*args, javaopts=[*JVM_OPTIONS, *javaopts], return_proc=True, **kwargs)
            register_simulator_process(process)  # an engine worker's: a Ctrl-C kills it (envs/base.py)
            return (port, process) if return_proc else port

        launch_gateway.hera_jvm_options = JVM_OPTIONS  # type: ignore[attr-defined]
        module.launch_gateway = launch_gateway
