package darkpool.flink;

import java.util.Collection;

import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.configuration.MemorySize;
import org.apache.flink.configuration.ReadableConfig;
import org.apache.flink.state.rocksdb.ConfigurableRocksDBOptionsFactory;
import org.apache.flink.state.rocksdb.RocksDBOptionsFactory;
import org.rocksdb.ColumnFamilyOptions;
import org.rocksdb.DBOptions;

/**
 * RocksDB options of the job's keyed state: a bounded MANIFEST.
 *
 * <p>RocksDB appends a record to its MANIFEST at every memtable flush and compaction, and by
 * default starts a new one only past 1 GiB. Flink flushes each state's memtable at every
 * checkpoint and uploads the whole MANIFEST with every incremental checkpoint (it is not an
 * immutable SST file that later checkpoints can share). With a checkpoint every 5 s, the
 * bytes uploaded per checkpoint therefore grew without end: bench/soak.py measured the
 * MANIFEST of the pane aggregation at 512 KB after an hour, over three times its live data,
 * and growing linearly. Past {@link #MAX_MANIFEST_SIZE} RocksDB now writes a fresh MANIFEST
 * holding only the current file set (a few KB) and deletes the old one.
 *
 * <p>Set in flink-conf/config.yaml: {@code state.backend.rocksdb.options-factory:
 * darkpool.flink.BoundedManifest}; the limit is {@code darkpool.rocksdb.max-manifest-size}.
 */
public class BoundedManifest implements ConfigurableRocksDBOptionsFactory {
    private static final long serialVersionUID = 1L;

    public static final ConfigOption<MemorySize> MAX_MANIFEST_SIZE =
            ConfigOptions.key("darkpool.rocksdb.max-manifest-size")
                    .memoryType()
                    .defaultValue(MemorySize.parse("64kb"))
                    .withDescription("Size past which RocksDB starts a new MANIFEST file.");

    private long maxManifestBytes = MAX_MANIFEST_SIZE.defaultValue().getBytes();

    @Override
    public DBOptions createDBOptions(DBOptions current, Collection<AutoCloseable> handlesToClose) {
        return current.setMaxManifestFileSize(maxManifestBytes);
    }

    @Override
    public ColumnFamilyOptions createColumnOptions(
            ColumnFamilyOptions current, Collection<AutoCloseable> handlesToClose) {
        return current;
    }

    @Override
    public RocksDBOptionsFactory configure(ReadableConfig configuration) {
        long bytes = configuration.get(MAX_MANIFEST_SIZE).getBytes();
        if (bytes <= 0) {
            throw new IllegalArgumentException(
                    MAX_MANIFEST_SIZE.key() + " must be > 0 (it is " + bytes + " bytes); e.g. 64kb");
        }
        maxManifestBytes = bytes;
        return this;
    }
}
