"""Typed configuration shared across concerns, with local defaults.

One frozen dataclass per concern. Every field has a local default that matches the
embedded stack (`darkpool stack up`) and can be overridden from the environment
(`DARKPOOL_<FIELD>` in upper case, e.g. DARKPOOL_BOOTSTRAP_SERVERS) or by the CLI flags
that build these objects. Nothing else in the code hard-codes a host, topic or port.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


class ConfigError(ValueError):
    """A DARKPOOL_* environment variable holds a value its field cannot take."""


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _parse(var: str, text: str, kind: type) -> Any:
    """One environment value as the field's type; a bad value names its variable."""
    if kind is bool:
        if text.strip().lower() not in _TRUE + _FALSE:
            raise ConfigError(f"{var}={text!r} is not a boolean; use 1/0, true/false, yes/no or on/off")
        return text.strip().lower() in _TRUE
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise ConfigError(f"{var}={text!r} is not {what}; set it to one or unset it") from None
    return kind(text)


def _check_address(var: str, name: str, value: str) -> None:
    """URLs and host:port lists are checked here, not at first use deep inside a client."""
    if name.endswith("_url"):
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError as exc:
            raise ConfigError(f"{var}={value!r} is not a URL ({exc}); use e.g. http://localhost:8500") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{var}={value!r} is not an http(s) URL; use e.g. http://localhost:8500")
    elif name == "bootstrap_servers":
        for hp in value.split(","):
            host, _, port = hp.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"{var}={value!r}: {hp.strip()!r} is not HOST:PORT; use e.g. localhost:9092")


def from_env(cls: type[T], **overrides: Any) -> T:
    """Build `cls` from its defaults, then DARKPOOL_<FIELD> env vars, then `overrides`.

    A value that does not fit its field raises ConfigError naming the variable.
    """
    values: dict[str, Any] = {}
    used: list[str] = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        var = f"DARKPOOL_{field.name.upper()}"
        env = os.environ.get(var)
        if env is not None:
            kind = type(field.default) if field.default is not dataclasses.MISSING else str
            values[field.name] = _parse(var, env, kind)
            if kind is str:
                _check_address(var, field.name, env)
            used.append(f"{var}={env!r}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        if not used:
            raise
        raise ConfigError(f"{exc} (from the environment: {', '.join(used)})") from None


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = "localhost:9092"  # broker list, host:port[,host:port]
    trades_topic: str = "darkpool.trades"  # input: one JSON event per message, key = instrument
    alerts_topic: str = "darkpool.alerts"  # output: committed (exactly-once) alerts
    alerts_fast_topic: str = "darkpool.alerts.fast"  # optional at-least-once low-latency alerts
    dead_letter_topic: str = "darkpool.deadletter"  # malformed / late events with a reason
    partitions: int = 4  # partitions per topic created by `darkpool stack up`


@dataclass(frozen=True)
class FlinkConfig:
    rest_host: str = "localhost"  # JobManager REST endpoint / web UI host
    rest_port: int = 8081  # ... and port

    @property
    def rest_url(self) -> str:
        return f"http://{self.rest_host}:{self.rest_port}"


def panes_in(seconds: float, slide_s: float) -> int:
    """Panes of `slide_s` seconds in `seconds` of event time, at least 1 (for code that
    holds the pane length only; `WindowConfig.panes_in` otherwise)."""
    return max(1, round(seconds / slide_s))


@dataclass(frozen=True)
class WindowConfig:
    """Event-time windowing shared by the job and by training.

    A window of `size_s` seconds slides every `slide_s` seconds. It is cut into
    `size_s / slide_s` panes (= the model's time buckets), each `slide_s` long, so
    training windows and streaming windows are the same object.
    """

    size_s: int = 60  # sliding window length, seconds of event time
    slide_s: int = 5  # slide = pane = one time bucket of the model input

    def __post_init__(self) -> None:
        if self.slide_s <= 0 or self.size_s <= 0 or self.size_s % self.slide_s:
            raise ValueError(
                f"window size {self.size_s}s must be a positive multiple of the slide "
                f"{self.slide_s}s (panes of one slide each make up the window)"
            )

    @property
    def n_buckets(self) -> int:
        return self.size_s // self.slide_s

    @property
    def slide_ms(self) -> int:
        return self.slide_s * 1000

    @property
    def slide_ns(self) -> int:
        return self.slide_s * 1_000_000_000

    @property
    def panes_per_minute(self) -> float:
        return 60 / self.slide_s

    def panes_in(self, seconds: float) -> int:
        """Panes (= windows of one instrument: one ends per slide) in `seconds` of event
        time, at least 1. Spans of event time that the code counts in panes or windows
        are defined in seconds and converted here, so they keep their length under
        any geometry.

        >>> WindowConfig().panes_in(3600), WindowConfig(30, 2).panes_in(3600), WindowConfig(63, 7).panes_in(60)
        (720, 1800, 9)
        """
        return panes_in(seconds, self.slide_s)

    def describe(self) -> str:
        """The geometry in words, as errors name it.

        >>> WindowConfig().describe()
        '60 s sliding every 5 s (12 panes)'
        """
        return f"{self.size_s} s sliding every {self.slide_s} s ({self.n_buckets} panes)"


DEFAULT_WINDOW = WindowConfig()  # the geometry of code paths given none (training, tests, tools)
# Where a geometry is set: the job's flags, or the environment (from_env(WindowConfig))
# for the job, training and the evaluation alike.
WINDOW_SETTINGS = "--window-size/--window-slide (job) or DARKPOOL_SIZE_S/DARKPOOL_SLIDE_S"


class GeometryMismatch(ValueError):
    """A model's window geometry (or channels) disagrees with the window this code cuts."""


def check_geometry(configured: WindowConfig, model_window: Mapping[str, Any], model: str = "the model") -> None:
    """The one check that a model was trained on the window geometry `configured` cuts.

    `model_window` is what the model artifact records (config.json "window", or the
    scorer's model configuration): `size_s`, `slide_s`, `n_buckets`, any of them absent
    in older artifacts (those are checked on what they record). A model trained on 5 s
    panes scores 10 s panes without error, and meaninglessly: a mismatch raises
    GeometryMismatch naming both geometries and the settings to change.

    >>> check_geometry(WindowConfig(), {"size_s": 60, "slide_s": 5, "n_buckets": 12})
    >>> check_geometry(WindowConfig(), {"n_buckets": 12})
    >>> check_geometry(WindowConfig(60, 10), {"size_s": 60, "slide_s": 5, "n_buckets": 12}, "artifact A")
    Traceback (most recent call last):
    ...
    core.config.GeometryMismatch: artifact A was trained on 60 s sliding every 5 s (12 panes) but the window here is 60 s sliding every 10 s (6 panes): set --window-size/--window-slide (job) or DARKPOOL_SIZE_S/DARKPOOL_SLIDE_S to the model's geometry, or use a model trained on this one
    """
    recorded = {k: int(model_window[k]) for k in ("size_s", "slide_s", "n_buckets") if model_window.get(k)}
    ours = {"size_s": configured.size_s, "slide_s": configured.slide_s, "n_buckets": configured.n_buckets}
    if all(ours[k] == v for k, v in recorded.items()):
        return
    if "size_s" in recorded and "slide_s" in recorded:
        theirs = WindowConfig(recorded["size_s"], recorded["slide_s"]).describe()
    else:
        theirs = ", ".join(f"{k}={v}" for k, v in recorded.items())
    raise GeometryMismatch(
        f"{model} was trained on {theirs} but the window here is {configured.describe()}: set "
        f"{WINDOW_SETTINGS} to the model's geometry, or use a model trained on this one"
    )


@dataclass(frozen=True)
class ScorerEndpoint:
    scorer_url: str = "http://localhost:8500"  # scorer service (Open Inference Protocol v2 REST)
    model_name: str = "darkpool"  # model name in the v2 protocol paths
