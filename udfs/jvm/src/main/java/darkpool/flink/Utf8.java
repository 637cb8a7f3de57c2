package darkpool.flink;

/**
 * Strict UTF-8 validation of a message's bytes, as Python's {@code bytes.decode("utf-8")}:
 * no overlong forms, no surrogates (U+D800..DFFF), nothing above U+10FFFF, no truncated
 * sequence. Flink's raw format hands the Kafka bytes through undecoded; Jackson would only
 * notice bad bytes inside the strings it decodes, not inside skipped values.
 */
final class Utf8 {
    private Utf8() {}

    static boolean valid(byte[] b) {
        int i = 0;
        int n = b.length;
        while (i < n) {
            int c = b[i] & 0xFF;
            if (c < 0x80) { // ASCII: nearly every byte of a real event
                i++;
                continue;
            }
            int len;
            int lo = 0x80;
            int hi = 0xBF; // allowed range of the second byte
            if (c >= 0xC2 && c <= 0xDF) {
                len = 2;
            } else if (c >= 0xE0 && c <= 0xEF) {
                len = 3;
                if (c == 0xE0) {
                    lo = 0xA0; // no overlong
                } else if (c == 0xED) {
                    hi = 0x9F; // no surrogates
                }
            } else if (c >= 0xF0 && c <= 0xF4) {
                len = 4;
                if (c == 0xF0) {
                    lo = 0x90;
                } else if (c == 0xF4) {
                    hi = 0x8F; // <= U+10FFFF
                }
            } else {
                return false;
            }
            if (i + len > n) {
                return false;
            }
            int second = b[i + 1] & 0xFF;
            if (second < lo || second > hi) {
                return false;
            }
            for (int k = 2; k < len; k++) {
                if ((b[i + k] & 0xC0) != 0x80) {
                    return false;
                }
            }
            i += len;
        }
        return true;
    }
}
