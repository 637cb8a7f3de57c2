package darkpool.flink;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code event_time_ms(payload)}: the event's time in ms (ts ns floor 1e6) when it keeps
 * the contract, else 0.
 *
 * <p>The source's rowtime, from which the watermark is generated. A malformed event gets 0:
 * it is dead-lettered anyway, and a broken event must not move the watermark (a bad ts far
 * in the future would make every good event after it late). Shares its parse with
 * {@link ParseEvent} on the same record (see {@link EventParser#of}).
 */
public class EventTimeMs extends ScalarFunction {
    public long eval(@DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData payload) {
        EventParser e = EventParser.of(payload);
        return e.reason == null ? Math.floorDiv((Long) e.values[EventParser.TS], 1_000_000L) : 0L;
    }
}
