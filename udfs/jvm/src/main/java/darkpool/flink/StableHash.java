package darkpool.flink;

import org.apache.flink.table.functions.ScalarFunction;

/**
 * A string's shard in [0, shards): {@code String.hashCode()} (fixed by the Java language
 * specification, so the same on every JVM and every run) modulo {@code shards}.
 *
 * <p>The pane aggregation groups instruments into shards so that one vectorized pandas call
 * serves many instruments (udfs/pane_udaf.py); a shard must not depend on anything but the
 * instrument, or a restored job would split an instrument's pane across two groups.
 */
public class StableHash extends ScalarFunction {
    public Integer eval(String value, Integer shards) {
        if (value == null || shards == null || shards <= 0) {
            return null;
        }
        return Math.floorMod(value.hashCode(), shards);
    }
}
