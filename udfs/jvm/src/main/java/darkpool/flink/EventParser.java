package darkpool.flink;

import java.util.Arrays;
import java.util.HashMap;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.StreamReadConstraints;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.exc.StreamConstraintsException;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.json.JsonReadFeature;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.binary.BinaryStringData;

/**
 * One trade event (the JSON contract of core/schemas.py) parsed and validated in one pass.
 *
 * <p>Typing follows Python's {@code json.loads} + {@code core.schemas.validate_record}, so
 * the JVM and the dead-letter formatter agree: integers must be JSON integers that fit in
 * int64 (no "5", no 5.0), numbers may be integers or fractions (NaN / Infinity are read as
 * Python reads them, and the rules reject them), strings must be strings (Unicode: no
 * unpaired surrogate), {@code contra} a string or null, {@code hidden} true or false.
 * Unknown keys (and anything nested under them) are skipped; a repeated key keeps its last
 * value, as in Python; text after the object is an error. Then the value rules, in the
 * order and with the words of {@code core.schemas.RULES} (tests/integration/test_parse_event.py
 * checks both agree).
 *
 * <p>Hostile input is bounded before and while it is read, with the bounds of
 * core/schemas.py (the constants below; tests/unit/test_contract.py checks they are the
 * same): message size, UTF-8, nesting depth, string lengths. Nothing a payload holds can
 * throw out of here: every problem is a {@link #reason}.
 *
 * <p>Event time must be plausible ({@code core.schemas.TimePlausibility}): not beyond the
 * wall clock + a tolerance, and not further than a maximum jump from the latest plausible
 * event of the same partition on this thread (the source subtask reading it). Otherwise
 * the reason is "ts: implausible_time: ..." and {@link EventTimeMs} gives 0, so a bad
 * clock never moves the watermark. The per-partition reference lives in memory: after a
 * restart the first event of a partition sets it again.
 *
 * <p>Both SQL functions of the source ({@link EventTimeMs} for the watermark, {@link
 * ParseEvent} for the typed view) call {@link #of}, which keeps the last payload parsed on
 * this thread: the two calls on one record parse it once (and update the partition's
 * reference once). Chained operators run on one thread, one record at a time, so the
 * second call always finds the first one's result.
 */
final class EventParser {
    static final String[] FIELDS = {
        "ts", "instrument", "venue", "event", "order_id", "participant", "side",
        "price", "qty", "contra", "bid", "ask", "hidden"
    };
    static final int TS = 0, INSTRUMENT = 1, VENUE = 2, EVENT = 3, ORDER_ID = 4, PARTICIPANT = 5,
            SIDE = 6, PRICE = 7, QTY = 8, CONTRA = 9, BID = 10, ASK = 11, HIDDEN = 12;

    // ---- the bounds of core/schemas.py (tests/unit/test_contract.py checks each value) ----
    static final int MAX_MESSAGE_BYTES = 16384;
    static final int MAX_NESTING_DEPTH = 32;
    static final int MAX_CHARS_INSTRUMENT = 32;
    static final int MAX_CHARS_VENUE = 32;
    static final int MAX_CHARS_ORDER_ID = 64;
    static final int MAX_CHARS_PARTICIPANT = 64;
    static final int MAX_CHARS_CONTRA = 64;
    static final long DEFAULT_MAX_FUTURE_MS = 300000L;
    static final long DEFAULT_MAX_JUMP_MS = 604800000L;
    static final int DEFAULT_REANCHOR_AFTER = 50;
    // -----------------------------------------------------------------------------------------

    /** Longest value per field (index of FIELDS), 0 where the field is not free text. */
    private static final int[] MAX_CHARS = new int[FIELDS.length];

    static {
        MAX_CHARS[INSTRUMENT] = MAX_CHARS_INSTRUMENT;
        MAX_CHARS[VENUE] = MAX_CHARS_VENUE;
        MAX_CHARS[ORDER_ID] = MAX_CHARS_ORDER_ID;
        MAX_CHARS[PARTICIPANT] = MAX_CHARS_PARTICIPANT;
        MAX_CHARS[CONTRA] = MAX_CHARS_CONTRA;
    }

    private static final JsonFactory FACTORY =
            JsonFactory.builder()
                    .enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
                    .streamReadConstraints(
                            StreamReadConstraints.builder()
                                    .maxNestingDepth(MAX_NESTING_DEPTH)
                                    // Python reads numbers of any length (the size bound
                                    // applies first): so must we, or the two disagree
                                    .maxNumberLength(MAX_MESSAGE_BYTES)
                                    .build())
                    .build();
    private static final ThreadLocal<EventParser> LAST = ThreadLocal.withInitial(EventParser::new);
    private static final Object WRONG_TYPE = new Object();
    private static final Object LONE_SURROGATE = new Object();
    private static final String IMPLAUSIBLE = "ts: implausible_time: more than ";

    /** The typed contract fields (null when absent or of the wrong JSON type). */
    final Object[] values = new Object[FIELDS.length];
    /** Null when the event keeps the contract, else "field: why" (type error or first broken rule). */
    String reason;

    private byte[] lastPayload;
    private Integer lastPartition;
    /** Per partition (null key: a source without partitions): its time reference. */
    private final HashMap<Integer, TimeReference> references = new HashMap<>();

    private EventParser() {}

    /** The parse of {@code payload} with the default time bounds and no partition. */
    static EventParser of(StringData payload) {
        return of(payload, null, DEFAULT_MAX_FUTURE_MS, DEFAULT_MAX_JUMP_MS, DEFAULT_REANCHOR_AFTER);
    }

    /** The parse of {@code payload} read from {@code partition} (this thread's object: read it before the next call). */
    static EventParser of(
            StringData payload, Integer partition, Long maxFutureMs, Long maxJumpMs, Integer reanchorAfter) {
        // a NULL bound (SQL) is the default one
        long future = maxFutureMs == null ? DEFAULT_MAX_FUTURE_MS : maxFutureMs;
        long jump = maxJumpMs == null ? DEFAULT_MAX_JUMP_MS : maxJumpMs;
        int reanchor = reanchorAfter == null ? DEFAULT_REANCHOR_AFTER : reanchorAfter;
        EventParser e = LAST.get();
        byte[] bytes = payload == null ? null : ((BinaryStringData) payload).toBytes();
        boolean same = e.lastPayload != null && bytes != null && Arrays.equals(e.lastPayload, bytes)
                && java.util.Objects.equals(e.lastPartition, partition);
        if (!same) {
            e.parse(bytes);
            if (e.reason == null) {
                e.reason = e.implausibleTime(partition, future, jump, reanchor);
            }
            e.lastPayload = bytes;
            e.lastPartition = partition;
        }
        return e;
    }

    private void parse(byte[] payload) {
        Arrays.fill(values, null);
        reason = null;
        if (payload == null) {
            reason = "<payload>: empty message";
            return;
        }
        // the order of core.schemas._decode: size, UTF-8, depth (while parsing), JSON
        if (payload.length > MAX_MESSAGE_BYTES) {
            reason = "<payload>: message larger than " + MAX_MESSAGE_BYTES + " bytes";
            return;
        }
        if (!Utf8.valid(payload)) {
            reason = "<payload>: not UTF-8";
            return;
        }
        try (JsonParser p = FACTORY.createParser(payload)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                reason = "<record>: must be a JSON object";
                // Python measures the depth of the whole text first: so must we
                while (p.nextToken() != null) {}
                return;
            }
            // per field: the last occurrence decides (a repeated key keeps its last value)
            String[] problems = new String[FIELDS.length];
            for (JsonToken t = p.nextToken(); t == JsonToken.FIELD_NAME; t = p.nextToken()) {
                String name = p.currentName();
                JsonToken v = p.nextToken();
                int i = indexOf(name);
                if (i < 0) {
                    p.skipChildren();
                    continue;
                }
                Object value = read(p, v, i);
                boolean wrong = value == WRONG_TYPE || value == LONE_SURROGATE;
                values[i] = wrong ? null : value;
                problems[i] = value == LONE_SURROGATE ? name + ": must be Unicode text (has an unpaired surrogate)"
                        : wrong ? name + ": wrong JSON type (" + v + ")" : null;
            }
            for (int i = 0; i < FIELDS.length && reason == null; i++) {
                reason = problems[i];
            }
            if (p.nextToken() != null) {
                reason = "<payload>: text after the JSON object";
                while (p.nextToken() != null) {} // depth of the rest, as Python checks it
            }
        } catch (StreamConstraintsException ex) {
            Arrays.fill(values, null);
            reason = ex.getMessage() != null && ex.getMessage().contains("nesting depth")
                    ? "<payload>: JSON nested deeper than " + MAX_NESTING_DEPTH + " levels"
                    : "<payload>: not JSON (" + firstLine(ex.getMessage()) + ")";
            return;
        } catch (Exception | StackOverflowError ex) { // not JSON, truncated, bad escape: a dead letter, never a crash
            Arrays.fill(values, null);
            reason = "<payload>: not JSON (" + firstLine(ex.getMessage()) + ")";
            return;
        }
        if (reason == null) {
            reason = brokenRule();
        }
    }

    /** The first rule of core.schemas.RULES this typed event breaks, or null. */
    private String brokenRule() {
        Long ts = (Long) values[TS];
        if (ts == null || ts <= 0) {
            return "ts: must be a positive int64 epoch-nanosecond timestamp";
        }
        if (!isText(INSTRUMENT)) {
            return textRule(INSTRUMENT);
        }
        if (!isText(VENUE)) {
            return textRule(VENUE);
        }
        String event = (String) values[EVENT];
        if (!"new".equals(event) && !"cancel".equals(event) && !"fill".equals(event)) {
            return "event: must be one of new, cancel, fill";
        }
        if (!isText(ORDER_ID)) {
            return textRule(ORDER_ID);
        }
        if (!isText(PARTICIPANT)) {
            return textRule(PARTICIPANT);
        }
        if (!"B".equals(values[SIDE]) && !"S".equals(values[SIDE])) {
            return "side: must be B or S";
        }
        if (!positiveFinite(PRICE)) {
            return "price: must be a finite number > 0";
        }
        Long qty = (Long) values[QTY];
        if (qty == null || qty <= 0) {
            return "qty: must be an integer > 0";
        }
        if (!positiveFinite(BID)) {
            return "bid: must be a finite number > 0";
        }
        if (!positiveFinite(ASK)) {
            return "ask: must be a finite number > 0";
        }
        if ((Double) values[BID] > (Double) values[ASK]) {
            return "ask: bid must not exceed ask";
        }
        if (values[HIDDEN] == null) {
            return "hidden: must be a boolean";
        }
        boolean fill = "fill".equals(event);
        if (fill ? !isText(CONTRA) : values[CONTRA] != null) {
            return textRule(CONTRA) + " on fills and null otherwise";
        }
        return null;
    }

    /** Null when this (valid) event's time is plausible, else the implausible_time reason. */
    private String implausibleTime(Integer partition, long maxFutureMs, long maxJumpMs, int reanchorAfter) {
        long ms = Math.floorDiv((Long) values[TS], 1_000_000L);
        if (ms > System.currentTimeMillis() + maxFutureMs) {
            return IMPLAUSIBLE + maxFutureMs + " ms after the wall clock";
        }
        TimeReference ref = references.computeIfAbsent(partition, k -> new TimeReference());
        return ref.accept(ms, maxJumpMs, reanchorAfter)
                ? null
                : IMPLAUSIBLE + maxJumpMs + " ms from its partition's recent events";
    }

    /**
     * The latest plausible event time of one partition, and the run of consecutive events
     * that disagree with it: {@code reanchorAfter} of them that agree among themselves are a
     * real jump (a new replay on the topic, a bad first event), and become the reference.
     */
    private static final class TimeReference {
        private boolean set;
        private long latestMs;
        private int offRun;
        private long offLatestMs;

        boolean accept(long ms, long maxJumpMs, int reanchorAfter) {
            if (!set || Math.abs(ms - latestMs) <= maxJumpMs) {
                latestMs = set ? Math.max(latestMs, ms) : ms;
                set = true;
                offRun = 0;
                return true;
            }
            if (offRun > 0 && Math.abs(ms - offLatestMs) <= maxJumpMs) {
                offRun++;
                offLatestMs = Math.max(offLatestMs, ms);
            } else {
                offRun = 1;
                offLatestMs = ms;
            }
            if (offRun >= reanchorAfter) {
                latestMs = offLatestMs;
                offRun = 0;
                return true;
            }
            return false;
        }
    }

    private static String textRule(int field) {
        return FIELDS[field] + ": must be a non-empty string of at most " + MAX_CHARS[field] + " characters";
    }

    /** Non-empty and at most MAX_CHARS code points (Python's len of the same string). */
    private boolean isText(int field) {
        String s = (String) values[field];
        return s != null && !s.isEmpty() && s.codePointCount(0, s.length()) <= MAX_CHARS[field];
    }

    private boolean positiveFinite(int field) {
        Double x = (Double) values[field];
        return x != null && Double.isFinite(x) && x > 0;
    }

    private static Object read(JsonParser p, JsonToken v, int field) throws java.io.IOException {
        switch (field) {
            case TS:
            case QTY:
                if (v == JsonToken.VALUE_NUMBER_INT
                        && p.getNumberType() != JsonParser.NumberType.BIG_INTEGER) {
                    return p.getLongValue();
                }
                break;
            case PRICE:
            case BID:
            case ASK:
                if (v == JsonToken.VALUE_NUMBER_INT || v == JsonToken.VALUE_NUMBER_FLOAT) {
                    return p.getDoubleValue();
                }
                break;
            case HIDDEN:
                if (v == JsonToken.VALUE_TRUE || v == JsonToken.VALUE_FALSE) {
                    return v == JsonToken.VALUE_TRUE;
                }
                break;
            case CONTRA:
                if (v == JsonToken.VALUE_NULL) {
                    return null;
                }
                if (v == JsonToken.VALUE_STRING) {
                    return text(p.getText());
                }
                break;
            default: // the string fields
                if (v == JsonToken.VALUE_STRING) {
                    return text(p.getText());
                }
        }
        p.skipChildren();
        return WRONG_TYPE;
    }

    /** The string, or LONE_SURROGATE when it holds one ("\ud800" is JSON, not text). */
    private static Object text(String s) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (Character.isHighSurrogate(c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
                i++;
            } else if (Character.isSurrogate(c)) {
                return LONE_SURROGATE;
            }
        }
        return s;
    }

    private static int indexOf(String name) {
        for (int i = 0; i < FIELDS.length; i++) {
            if (FIELDS[i].equals(name)) {
                return i;
            }
        }
        return -1;
    }

    private static String firstLine(String message) {
        if (message == null) {
            return "unreadable";
        }
        int nl = message.indexOf('\n');
        String line = nl < 0 ? message : message.substring(0, nl);
        return line.length() > 200 ? line.substring(0, 200) : line;
    }
}
