"""Planner calls from the Python driver that cannot fail on the thread they land on.

Flink's SQL planner (Calcite) finds its metadata handlers through a *thread-local*,
`RelMetadataQueryBase.THREAD_PROVIDERS`, which Calcite sets only on the thread that
created the planner's cluster (`RelOptCluster.setMetadataProvider`, called while
`StreamTableEnvironment.create` runs). A planner call made on any other JVM thread dies
in `RelMetadataQuery`'s constructor with `NullPointerException: metadataHandlerProvider`
(FLINK-23020; its fix was never merged).

From PyFlink every call runs on the JVM thread of the Py4J connection it was sent on.
Py4J keeps a pool of connections and opens a new one, with a new JVM thread, whenever a
call finds the pool empty: whenever another Python thread is using the gateway at that
moment (the callback server's threads answer the JVM's watchdog pings, and a garbage
collection there releases Java objects over the gateway). That race is the start-up
flake `toDataStream ... metadataHandlerProvider` seen once in nine backtests; holding the
connection in a second thread reproduces it every time (bench/start_bench.py --race).

The same race breaks a local run's JVM functions: PyFlink's `add_jars` puts the jars on
the *context class loader of the current JVM thread* only, and
`create_java_temporary_system_function` loads the class through the calling thread's
context class loader, so on a new connection the udfs jar "is not on Flink's classpath".

The cure: just before each such call, set the thread-local (and the context class loader
`remember_context_loader` kept right after `add_jars`) on the connection the call
will use (the same one: sequential calls of one Python thread take the newest pooled
connection), to what Calcite itself puts there, and should the race still slip in
between the two calls, set it again and retry. A failed call has planned nothing yet (it
fails while optimizing, before any operator is added to the environment).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
ATTEMPTS = 5
NPE_MARK = "metadataHandlerProvider"
CLASS_MARK = "ClassNotFoundException"
_context_loader: Any = None  # the driver's context class loader with the job's jars


def remember_context_loader() -> None:
    """Keep the current JVM thread's context class loader (call right after add_jars)."""
    global _context_loader
    from pyflink.java_gateway import get_gateway

    _context_loader = get_gateway().jvm.Thread.currentThread().getContextClassLoader()


def is_thread_error(exc: BaseException) -> bool:
    """Whether `exc` is what a call on the wrong JVM thread gives: Calcite's missing
    thread-local metadata provider, or a class the thread's loader does not have.

    >>> is_thread_error(RuntimeError(": java.lang.NullPointerException: metadataHandlerProvider"))
    True
    >>> is_thread_error(RuntimeError("java.lang.NullPointerException: other"))
    False
    """
    text = str(exc) + str(exc.__cause__ or "")
    return NPE_MARK in text or (_context_loader is not None and CLASS_MARK in text)


def _set_thread_providers(t_env: Any) -> None:
    """THREAD_PROVIDERS := JaninoRelMetadataProvider.of(FlinkDefaultRelMetadataProvider.INSTANCE)
    on the JVM thread of the Py4J connection this call goes over. The planner's classes
    live in their own class loader (flink-table-planner-loader), reached through the
    planner object."""
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    loader = t_env._j_tenv.getPlanner().getClass().getClassLoader()
    base = loader.loadClass("org.apache.calcite.rel.metadata.RelMetadataQueryBase")
    janino = loader.loadClass("org.apache.calcite.rel.metadata.JaninoRelMetadataProvider")
    iface = loader.loadClass("org.apache.calcite.rel.metadata.RelMetadataProvider")
    flink = loader.loadClass(
        "org.apache.flink.table.planner.plan.metadata.FlinkDefaultRelMetadataProvider"
    )
    none = gateway.new_array(gateway.jvm.java.lang.Class, 0)
    types = gateway.new_array(gateway.jvm.java.lang.Class, 1)
    types[0] = iface
    args = gateway.new_array(gateway.jvm.java.lang.Object, 1)
    args[0] = flink.getMethod("INSTANCE", none).invoke(
        None, gateway.new_array(gateway.jvm.java.lang.Object, 0)
    )  # a Scala object
    provider = janino.getMethod("of", types).invoke(None, args)
    base.getField("THREAD_PROVIDERS").get(None).set(provider)
    if _context_loader is not None:
        gateway.jvm.Thread.currentThread().setContextClassLoader(_context_loader)


def planned(t_env: Any, call: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """`call()` (a planner call on `t_env`), with the planner's thread-local set first,
    retried when the call landed on another thread all the same."""
    for attempt in range(1, attempts + 1):
        _set_thread_providers(t_env)
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 (Py4J or PyFlink's converted error; re-raised)
            if attempt == attempts or not is_thread_error(exc):
                raise
    raise AssertionError("unreachable")


def to_data_stream(t_env: Any, table: Any) -> Any:
    """`t_env.to_data_stream(table)`, safe on any Py4J connection."""
    return planned(t_env, lambda: t_env.to_data_stream(table))


def sql_query(t_env: Any, query: str) -> Any:
    """`t_env.sql_query(query)`, safe on any Py4J connection."""
    return planned(t_env, lambda: t_env.sql_query(query))
