package darkpool.flink;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code event_time_ms(payload [, partition, max_future_ms, max_jump_ms, reanchor_after])}:
 * the event's time in ms (ts ns floor 1e6) when it keeps the contract and its time is
 * plausible, else 0.
 *
 * <p>The source's rowtime, from which the watermark is generated. A malformed event gets 0:
 * it is dead-lettered anyway, and a broken event must not move the watermark (a bad ts far
 * in the future would make every good event after it late). So does an event whose time is
 * implausible (see {@link EventParser}): beyond the wall clock + {@code max_future_ms}, or
 * more than {@code max_jump_ms} from its partition's recent events. Shares its parse with
 * {@link ParseEvent} on the same record (see {@link EventParser#of}); both must get the same
 * arguments.
 */
public class EventTimeMs extends ScalarFunction {
    public long eval(@DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData payload) {
        return timeOf(EventParser.of(payload));
    }

    public long eval(
            @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData payload,
            Integer partition,
            Long maxFutureMs,
            Long maxJumpMs,
            Integer reanchorAfter) {
        return timeOf(EventParser.of(payload, partition, maxFutureMs, maxJumpMs, reanchorAfter));
    }

    private static long timeOf(EventParser e) {
        return e.reason == null ? Math.floorDiv((Long) e.values[EventParser.TS], 1_000_000L) : 0L;
    }
}
