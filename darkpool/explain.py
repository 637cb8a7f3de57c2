"""`darkpool explain ALERT_ID`: the evidence behind one alert, for the analyst who reads it.

    darkpool explain ALERT_ID --data PATH [--alerts FILE] [--context-s 60] [--out DIR]

The alert is the newest event (highest `seq`) of ALERT_ID, or of the one id that starts
with it (`darkpool alerts` prints the first 10 characters), in FILE (JSON lines, as
`darkpool alerts --json` prints them) or, without --alerts, on the alerts topic
(read_committed, from the beginning). The history is PATH: a `darkpool generate` folder
or any event-contract Parquet file, read through pyarrow filters that keep only the
alert's instrument and the episode +- --context-s (1.3 s end to end on a 1M-event file).
Writes

    summary.txt   the alert in words (times in ISO-8601 UTC, scenario, severity, score vs
                  threshold, its top channels described, the named participants and the
                  alert's account) and what each named participant did inside the
                  evidence span, counted from the history
    evidence.png  NBBO, every fill, the named participants' orders, fills and cancels,
                  the evidence span shaded over the lighter episode span

and prints the two paths. A mistake is one line and leaves nothing behind: both files are
made in memory first, the folder is created last.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.alerts import THRESHOLD_SOURCE_TEXT, format_line, iso_utc, value_unit
from core.channels import CHANNEL_DESCRIPTIONS
from core.cli_types import BOOTSTRAP_SERVERS, POSITIVE, Bounded, out_folder_problem
from core.features import REQUIRED_COLUMNS
from core.participant_account import account, pair_stats

MS = 1_000_000  # ns per ms: alerts count in ms, the history in ns
COLUMNS = ("instrument", *REQUIRED_COLUMNS)  # read; order_id too where the file has it
SIDE_COLOR = {"B": "tab:blue", "S": "tab:red"}
SHAPES = ("o", "s", "^", "D", "v", "P", "*", "h")  # one per named participant


# ---- the alert ---------------------------------------------------------------------------
def select_alert(events: list[dict[str, Any]], alert_id: str, source: str = "") -> tuple[dict[str, Any], int]:
    """The newest event of the alert `alert_id` (or of the one id starting with it) and how
    many events that alert has; LookupError saying which ids `source` holds otherwise.

    >>> evs = [{"alert_id": "abc1", "seq": 0}, {"alert_id": "abc1", "seq": 1}, {"alert_id": "xyz9", "seq": 0}]
    >>> select_alert(evs, "abc")
    ({'alert_id': 'abc1', 'seq': 1}, 2)
    >>> select_alert(evs, "nope")
    Traceback (most recent call last):
    ...
    LookupError: no alert nope (2 alerts there; e.g. abc1, xyz9)
    """
    ids = list(dict.fromkeys(e["alert_id"] for e in events))
    match = [i for i in ids if i == alert_id] or [i for i in ids if i.startswith(alert_id)]
    if len(match) != 1:
        shown = ", ".join((match or ids)[:3]) or "none"
        where = f" in {source}" if source else ""
        what = f"{alert_id}{where} starts {len(match)} alert ids" if match else f"no alert {alert_id}{where}"
        raise LookupError(f"{what} ({len(ids)} alert{'s' * (len(ids) != 1)} there; e.g. {shown})")
    mine = [e for e in events if e["alert_id"] == match[0]]
    return max(mine, key=lambda e: e["seq"]), len(mine)


def evidence_ms(alert: dict[str, Any]) -> tuple[int, int]:
    """[evidence_start, evidence_end) in ms; the episode where the event has none (schema 1).

    >>> evidence_ms({"episode_start": 0, "episode_end": 9, "evidence_start": 3, "evidence_end": 5})
    (3, 5)
    >>> evidence_ms({"episode_start": 0, "episode_end": 9})
    (0, 9)
    """
    lo, hi = alert.get("evidence_start"), alert.get("evidence_end")
    if lo is None or hi is None or hi <= lo:
        return alert["episode_start"], alert["episode_end"]
    return lo, hi


def shares(alert: dict[str, Any]) -> dict[str, float]:
    """Named participant -> its share (0..1) of the named participants' events."""
    n = max(int(alert.get("n_windows") or 1), 1)
    return {p["participant"]: float(p.get("share", p.get("weight", 0.0) / n)) for p in alert.get("participants", [])}


# ---- the history -------------------------------------------------------------------------
def history_file(path: Path) -> Path:
    """The events file of `path` (a folder's events.parquet), checked to be contract
    Parquet; ValueError in words otherwise. Reads the footer only."""
    file = path / "events.parquet" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"{path} has no events.parquet: give a `darkpool generate` folder or a contract Parquet file")
    try:
        schema = pq.read_schema(file)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"{file} is not a Parquet file ({exc})") from None
    if missing := [c for c in COLUMNS if c not in schema.names]:
        raise ValueError(f"{file} lacks the event-contract columns {missing} (core/schemas.py EVENT_SCHEMA)")
    if not pa.types.is_integer(schema.field("ts").type):
        raise ValueError(f"{file}: ts is {schema.field('ts').type}, the contract's is int64 epoch ns")
    return file


def load_history(path: Path, instrument: str, start_ns: int, end_ns: int) -> pd.DataFrame:
    """The contract events of `instrument` with start_ns <= ts < end_ns, in time order."""
    file = history_file(path)
    cols = [*COLUMNS, *(["order_id"] if "order_id" in pq.read_schema(file).names else [])]
    table = pq.read_table(file, columns=cols, filters=[("instrument", "=", instrument),
                                                       ("ts", ">=", start_ns), ("ts", "<", end_ns)])  # fmt: skip
    return table.to_pandas().sort_values("ts", kind="stable").reset_index(drop=True)


def coverage(path: Path, instrument: str) -> str:
    """What the history holds, for a message: the instrument's time span, else its names.

    Only called on the way to an error: it reads the instrument and ts columns whole."""
    table = pq.read_table(history_file(path), columns=["instrument", "ts"])
    mine = table.filter(pc.equal(table["instrument"], instrument))
    if mine.num_rows:
        lo, hi = pc.min_max(mine["ts"]).values()
        return f"it covers {instrument} from {iso_utc(lo.as_py() // MS)} to {iso_utc(hi.as_py() // MS)}"
    if not table.num_rows:
        return "it has no events at all"
    names = sorted(pc.unique(table["instrument"]).to_pylist())
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    lo, hi = pc.min_max(table["ts"]).values()
    return f"it covers {shown} (no {instrument}) from {iso_utc(lo.as_py() // MS)} to {iso_utc(hi.as_py() // MS)}"


def participant_activity(history: pd.DataFrame, names: list[str], start_ns: int, end_ns: int) -> pd.DataFrame:
    """Per named participant, what the history shows it did in [start_ns, end_ns): orders
    placed per side, cancels, fills (as order owner or contra), and in words what the alert's
    account says of the first (core/participant_account.py: shares, ticks from the quote,
    shares bought and sold, how soon it cancelled), here from the history itself."""
    h = history[(history["ts"] >= start_ns) & (history["ts"] < end_ns)]
    rows = []
    if names:
        key = np.full(len(h), "x", dtype=object)
        stats = pair_stats(key=key, participant=h["participant"].to_numpy(object), contra=h["contra"].to_numpy(object),
                           event=h["event"].to_numpy(object), side=h["side"].to_numpy(object),
                           price=h["price"].to_numpy(), qty=h["qty"].to_numpy(), bid=h["bid"].to_numpy(),
                           ask=h["ask"].to_numpy(), ts=h["ts"].to_numpy(),
                           order_id=h["order_id"].to_numpy(object) if "order_id" in h else None,
                           want_key=np.full(len(names), "x", dtype=object),
                           want_name=np.array(names, dtype=object))  # fmt: skip
    for i, name in enumerate(names):
        own, contra = h["participant"] == name, h["contra"] == name
        new, fill = own & (h["event"] == "new"), (h["event"] == "fill") & (own | contra)
        rows.append({"participant": name, "orders": int(new.sum()), "buy_orders": int((new & (h["side"] == "B")).sum()),
                     "sell_orders": int((new & (h["side"] == "S")).sum()),
                     "cancels": int((own & (h["event"] == "cancel")).sum()), "fills": int(fill.sum()),
                     "account": account(stats[i]) or "nothing"})  # fmt: skip
    return pd.DataFrame(rows, columns=["participant", "orders", "buy_orders", "sell_orders", "cancels", "fills",
                                       "account"]).set_index("participant")  # fmt: skip


# ---- the words ---------------------------------------------------------------------------
def _channel(f: dict[str, Any]) -> str:
    """One top channel in words: description, how unusual, value vs the usual.

    >>> _channel({"channel": "log_cancel", "z": 9.5, "z_clipped": 8.0, "level": "extreme", "value": 2.5,
    ...           "unit": "log1p(count)", "normal": 0.4})
    'log_cancel (cancels): extreme, z > +8; value 2.5 [log1p(count)], usual 0.4'
    """
    z = float(f.get("z_clipped", f["z"]))
    shown = f"z > {z:+.0f}" if z != f["z"] else f"z {z:+.1f}"
    text = f"{f['channel']} ({CHANNEL_DESCRIPTIONS.get(f['channel'], 'no description')}): {f.get('level', '')}, {shown}"
    if f.get("value") is not None:
        unit = f.get("unit") or value_unit(f["channel"]) or ""
        usual = f", usual {f['normal']:.3g}" if f.get("normal") is not None else ""
        text += f"; value {f['value']:.3g} [{unit}]{usual}"
    return text


def summary_text(alert: dict[str, Any], activity: pd.DataFrame, n_events: int = 1, history: str = "") -> str:
    """The readable summary.txt of `alert` (its newest event; `n_events` it had), with the
    named participants' `activity` (participant_activity) and a line on the `history` read."""
    a = alert
    lo, hi = evidence_ms(a)
    scen = a["scenario"] + (f", probability {a['scenario_probability']:.2f}" if "scenario_probability" in a else "")
    source = THRESHOLD_SOURCE_TEXT.get(a["threshold_source"], a["threshold_source"])
    closed = f", closed: {a['close_reason'].replace('_', ' ')}" if a.get("close_reason") else ""
    lines = [
        f"Alert {a['alert_id']}: {n_events} event{'s' * (n_events != 1)}, newest seq {a['seq']} ({a['status']}{closed})",
        "",
        f"instrument   {a['instrument']}",
        f"episode      {iso_utc(a['episode_start'])} to {iso_utc(a['episode_end'])} "
        f"({(a['episode_end'] - a['episode_start']) / 1000:.0f} s, {a['n_windows']} windows above threshold)",
        f"evidence     {iso_utc(lo)} to {iso_utc(hi)} (the panes that made it fire: look here)",
        f"scenario     {scen}",
        f"severity     {a.get('severity', 'not given (old schema)')}",
        f"score        peak {a['peak_score']:.3f} at {iso_utc(a['peak_window_end'])} vs threshold "
        f"{a['threshold']:.3f} ({source}; the model's {a['global_threshold']:.3f})"
        + (f", margin {a['score_margin']:+.2f}" if a.get("score_margin") is not None else ""),
        f"model        {a['model_version']}" + (" (DEGRADED: scored by rules)" if a.get("degraded") else ""),
        "",
        "Top channels at the peak window (how much worse than usual the model explained each):",
        *[f"  {i}. {_channel(f)}" for i, f in enumerate(a.get("top_features", []), 1)],
        *(["  none given"] if not a.get("top_features") else []),
        "",
        "Named participants (share of the named participants' burst above their usual pane, over the flagged windows):",
        *[f"  {name:<16} {100 * s:5.1f} %" for name, s in shares(a).items()],
        *(["  none named"] if not a.get("participants") else []),
    ]
    if a.get("account"):
        first = a["participants"][0]["participant"]
        lines += ["", f"The alert's account of {first} (evidence span): {a['account']}"]
    lines += ["", f"In the history, inside the evidence span {iso_utc(lo)} to {iso_utc(hi)}:",
              f"  {'participant':<16} {'orders (buy/sell)':>18} {'cancels':>8} {'fills':>6}  what it did"]
    for name, r in activity.iterrows():
        orders = f"{r['orders']} ({r['buy_orders']}/{r['sell_orders']})"
        lines.append(f"  {name:<16} {orders:>18} {r['cancels']:>8} {r['fills']:>6}  {r['account']}")
    if history:
        lines += ["", history]
    return "\n".join(lines) + "\n"


# ---- the picture -------------------------------------------------------------------------
def plot(history: pd.DataFrame, alert: dict[str, Any]) -> bytes:
    """evidence.png as bytes: NBBO bid/ask/mid, all fills (grey), the named participants'
    orders (hollow) and fills (filled) coloured by side, one shape each, cancels as x;
    the evidence span shaded, the episode lighter; the alert line as title."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    h = history
    t = h["ts"].to_numpy().astype("datetime64[ns]")
    fig, ax = plt.subplots(figsize=(14, 6.5), dpi=110)
    ax.step(t, h["bid"], where="post", lw=0.8, color="tab:cyan", label="NBBO bid")
    ax.step(t, h["ask"], where="post", lw=0.8, color="black", label="NBBO ask")
    ax.step(t, (h["bid"] + h["ask"]) / 2, where="post", lw=0.6, ls="--", color="0.5", label="mid")
    fill = (h["event"] == "fill").to_numpy()
    ax.scatter(t[fill], h["price"][fill], s=4, color="0.6", label="fill (anyone)", zorder=2)
    handles = []
    for name, shape in zip(shares(alert), SHAPES, strict=False):  # more names than shapes: the first 8
        own, contra = (h["participant"] == name).to_numpy(), (h["contra"] == name).to_numpy()
        for side, color in SIDE_COLOR.items():
            other = "S" if side == "B" else "B"
            on_side = (h["side"] == side).to_numpy()
            new = own & on_side & (h["event"] == "new").to_numpy()
            filled = fill & ((own & on_side) | (contra & (h["side"] == other).to_numpy()))  # contra: other side
            cancel = own & on_side & (h["event"] == "cancel").to_numpy()
            ax.scatter(t[new], h["price"][new], s=36, marker=shape, facecolors="none", edgecolors=color, zorder=3)
            ax.scatter(t[filled], h["price"][filled], s=44, marker=shape, color=color, edgecolors="black", zorder=4)
            ax.scatter(t[cancel], h["price"][cancel], s=30, marker="x", color=color, zorder=4)
        label = f"{name} ({100 * shares(alert)[name]:.0f} %)"
        handles.append(Line2D([], [], marker=shape, ls="", color="0.25", label=label))
    lo, hi = evidence_ms(alert)
    ax.axvspan(np.datetime64(alert["episode_start"], "ms"), np.datetime64(alert["episode_end"], "ms"),
               color="gold", alpha=0.12, lw=0)  # fmt: skip
    ax.axvspan(np.datetime64(lo, "ms"), np.datetime64(hi, "ms"), color="orange", alpha=0.3, lw=0)
    handles += [Patch(color="tab:blue", label="buy"), Patch(color="tab:red", label="sell"),
                Line2D([], [], marker="o", ls="", mfc="none", mec="0.25", label="order placed"),
                Line2D([], [], marker="o", ls="", color="0.25", mec="black", label="fill"),
                Line2D([], [], marker="x", ls="", color="0.25", label="cancel"),
                Patch(color="orange", alpha=0.3, label="evidence span"), Patch(color="gold", alpha=0.12, label="episode")]
    ax.legend(handles=[*ax.get_legend_handles_labels()[0], *handles], fontsize=7, ncol=2, loc="upper left")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("price")
    head = " ".join(format_line(alert).split(" | top:")[0].split())  # status ... score vs threshold, unpadded
    ax.set_title(textwrap.fill(head, 150), fontsize=9, loc="left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


# ---- the command -------------------------------------------------------------------------
def _alert_events(alerts_file: Path | None, bootstrap_servers: str | None, topic: str | None,
                  timeout: float) -> tuple[list[dict[str, Any]], str]:  # fmt: skip
    """Every alert event of the file or the topic, and the source's name for messages."""
    if alerts_file is not None:
        from darkpool.evaluate.alerts_grading import read_alert_file

        if not alerts_file.is_file():
            raise click.BadParameter(f"{alerts_file} is not a file of alert events (JSON lines)", param_hint="--alerts")
        try:
            return read_alert_file(alerts_file), str(alerts_file)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--alerts") from None
    from core.config import KafkaConfig, from_env
    from darkpool.stack.alerts_topic import BrokerUnavailable, read_alerts

    kafka = from_env(KafkaConfig, bootstrap_servers=bootstrap_servers, alerts_topic=topic)
    try:
        events = list(read_alerts(kafka.bootstrap_servers, kafka.alerts_topic, from_beginning=True, idle_timeout_s=timeout))
    except BrokerUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    return events, f"topic {kafka.alerts_topic}"


@click.command()
@click.argument("alert_id")
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="the history: a `darkpool generate` folder or an event-contract Parquet file")
@click.option("--alerts", "alerts_file", type=click.Path(path_type=Path), default=None,
              show_default="the alerts topic", help="alert events as JSON lines (`darkpool alerts --json`)")
@click.option("--context-s", type=Bounded(float, lo=0, hi=86_400), default=60.0,
              help="seconds of history shown before and after the episode")
@click.option("--out", type=click.Path(path_type=Path), default=None, show_default="./explain-<alert id>",
              help="folder for summary.txt and evidence.png")
@click.option("--bootstrap-servers", type=BOOTSTRAP_SERVERS, default=None,
              show_default="KafkaConfig / DARKPOOL_BOOTSTRAP_SERVERS", help="Kafka brokers (without --alerts)")
@click.option("--topic", default=None, show_default="KafkaConfig.alerts_topic", help="alerts topic (without --alerts)")
@click.option("--timeout", type=POSITIVE, default=10.0,
              help="without --alerts: stop reading after S seconds without a new alert")
def explain(alert_id: str, data: Path, alerts_file: Path | None, context_s: float, out: Path | None,
            bootstrap_servers: str | None, topic: str | None, timeout: float) -> None:  # fmt: skip
    """The evidence for one alert: summary.txt and evidence.png for an analyst."""
    # the cheap checks first: nothing is read from Kafka for a command that cannot finish
    if out is not None and (problem := out_folder_problem(out)):
        raise click.BadParameter(f"{out} {problem}", param_hint="--out")
    if not data.exists():
        raise click.BadParameter(f"{data} does not exist", param_hint="--data")
    try:
        history_file(data)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None
    events, source = _alert_events(alerts_file, bootstrap_servers, topic, timeout)
    try:
        alert, n_events = select_alert(events, alert_id, source)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    start, end = alert["episode_start"] * MS, alert["episode_end"] * MS
    pad = int(context_s * 1e9)
    history = load_history(data, alert["instrument"], start - pad, end + pad)
    in_episode = history["ts"].between(start, end).any()
    if not in_episode:
        raise click.ClickException(
            f"the history has no events of {alert['instrument']} between {iso_utc(alert['episode_start'])} and "
            f"{iso_utc(alert['episode_end'])} (the alert's episode); {coverage(data, alert['instrument'])}")
    lo, hi = evidence_ms(alert)
    activity = participant_activity(history, list(shares(alert)), lo * MS, hi * MS)
    read = (f"History: {len(history):,} events of {alert['instrument']} from {data}, "
            f"{iso_utc((start - pad) // MS)} to {iso_utc((end + pad) // MS)} (episode +- {context_s:g} s)")
    text, png = summary_text(alert, activity, n_events, read), plot(history, alert)
    out = out or Path(f"explain-{alert['alert_id']}")
    if problem := out_folder_problem(out):
        raise click.BadParameter(f"{out} {problem}", param_hint="--out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.txt").write_text(text)
    (out / "evidence.png").write_bytes(png)
    click.echo(f"summary   {out / 'summary.txt'}")
    click.echo(f"evidence  {out / 'evidence.png'}")
