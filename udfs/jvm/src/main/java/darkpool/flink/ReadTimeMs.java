package darkpool.flink;

import org.apache.flink.table.functions.ScalarFunction;

/**
 * The wall-clock time (epoch ms) at which the source task reads a record.
 *
 * <p>Called in the projection chained to the source, so it is the time the event was read;
 * the pane aggregation keeps the latest per instrument and pane, and an alert's
 * {@code latency_ms} is measured from it (so that a replay of old data shows the job's own
 * decision latency, not the data's age). Non-deterministic: evaluated per row.
 */
public class ReadTimeMs extends ScalarFunction {
    public Long eval() {
        return System.currentTimeMillis();
    }

    @Override
    public boolean isDeterministic() {
        return false;
    }
}
