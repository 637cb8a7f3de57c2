package darkpool.flink;

import java.util.Arrays;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.json.JsonReadFeature;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.binary.BinaryStringData;

/**
 * One trade event (the JSON contract of udfs/schemas.py) parsed and validated in one pass.
 *
 * <p>Typing follows Python's {@code json.loads} + {@code udfs.schemas.validate_record}, so
 * the JVM and the dead-letter formatter agree: integers must be JSON integers that fit in
 * int64 (no "5", no 5.0), numbers may be integers or fractions (NaN / Infinity are read as
 * Python reads them, and the rules reject them), strings must be strings, {@code contra} a
 * string or null, {@code hidden} true or false. Unknown keys (and anything nested under
 * them) are skipped; a repeated key keeps its last value, as in Python; text after the
 * object is an error. Then the value rules, in the order and with the words of
 * {@code udfs.schemas.RULES} (tests/integration/test_parse_event.py checks both agree).
 *
 * <p>Both SQL functions of the source ({@link EventTimeMs} for the watermark, {@link
 * ParseEvent} for the typed view) call {@link #of}, which keeps the last payload parsed on
 * this thread: the two calls on one record parse it once. Chained operators run on one
 * thread, one record at a time, so the second call always finds the first one's result.
 */
final class EventParser {
    static final String[] FIELDS = {
        "ts", "instrument", "venue", "event", "order_id", "participant", "side",
        "price", "qty", "contra", "bid", "ask", "hidden"
    };
    static final int TS = 0, INSTRUMENT = 1, VENUE = 2, EVENT = 3, ORDER_ID = 4, PARTICIPANT = 5,
            SIDE = 6, PRICE = 7, QTY = 8, CONTRA = 9, BID = 10, ASK = 11, HIDDEN = 12;

    private static final JsonFactory FACTORY =
            JsonFactory.builder().enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS).build();
    private static final ThreadLocal<EventParser> LAST = ThreadLocal.withInitial(EventParser::new);
    private static final Object WRONG_TYPE = new Object();

    /** The typed contract fields (null when absent or of the wrong JSON type). */
    final Object[] values = new Object[FIELDS.length];
    /** Null when the event keeps the contract, else "field: why" (type error or first broken rule). */
    String reason;

    private byte[] lastPayload;

    private EventParser() {}

    /** The parse of {@code payload} (this thread's object: read it before the next call). */
    static EventParser of(StringData payload) {
        EventParser e = LAST.get();
        byte[] bytes = payload == null ? null : ((BinaryStringData) payload).toBytes();
        if (e.lastPayload == null || bytes == null || !Arrays.equals(e.lastPayload, bytes)) {
            e.parse(bytes);
            e.lastPayload = bytes;
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
        try (JsonParser p = FACTORY.createParser(payload)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                reason = "<record>: must be a JSON object";
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
                boolean wrong = value == WRONG_TYPE;
                values[i] = wrong ? null : value;
                problems[i] = wrong ? name + ": wrong JSON type (" + v + ")" : null;
            }
            for (int i = 0; i < FIELDS.length && reason == null; i++) {
                reason = problems[i];
            }
            if (p.nextToken() != null) {
                reason = "<payload>: text after the JSON object";
            }
        } catch (Exception ex) { // not JSON, truncated, bad escape: a dead letter, never a crash
            Arrays.fill(values, null);
            reason = "<payload>: not JSON (" + firstLine(ex.getMessage()) + ")";
            return;
        }
        if (reason == null) {
            reason = brokenRule();
        }
    }

    /** The first rule of udfs.schemas.RULES this typed event breaks, or null. */
    private String brokenRule() {
        Long ts = (Long) values[TS];
        if (ts == null || ts <= 0) {
            return "ts: must be a positive int64 epoch-nanosecond timestamp";
        }
        if (isEmpty(INSTRUMENT)) {
            return "instrument: must be a non-empty string";
        }
        if (isEmpty(VENUE)) {
            return "venue: must be a non-empty string";
        }
        String event = (String) values[EVENT];
        if (!"new".equals(event) && !"cancel".equals(event) && !"fill".equals(event)) {
            return "event: must be one of new, cancel, fill";
        }
        if (isEmpty(ORDER_ID)) {
            return "order_id: must be a non-empty string";
        }
        if (isEmpty(PARTICIPANT)) {
            return "participant: must be a non-empty string";
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
        String contra = (String) values[CONTRA];
        boolean fill = "fill".equals(event);
        if (fill ? contra == null || contra.isEmpty() : contra != null) {
            return "contra: must be a non-empty string on fills and null otherwise";
        }
        return null;
    }

    private boolean isEmpty(int field) {
        String s = (String) values[field];
        return s == null || s.isEmpty();
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
                    return p.getText();
                }
                break;
            default: // the string fields
                if (v == JsonToken.VALUE_STRING) {
                    return p.getText();
                }
        }
        p.skipChildren();
        return WRONG_TYPE;
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
        return nl < 0 ? message : message.substring(0, nl);
    }
}
