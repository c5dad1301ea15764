/* fuzz_utf8.c — UTF-8 validation, repair and truncation (providers/utf8.h).
 *
 * Invariants, for any bytes:
 *  - utf8_valid agrees with jansson's own check (json_stringn accepts exactly
 *    the valid strings; both reject overlongs, surrogates, > U+10FFFF);
 *  - utf8_repair's output is valid, NUL-terminated at *out_len, at most three
 *    times the input, and repairing it again changes nothing;
 *  - repair of valid input is the identity;
 *  - the output is byte for byte what the WHATWG UTF-8 decoder (written
 *    here independently) makes of the input: each maximal invalid subpart
 *    becomes one U+FFFD, everything valid is kept;
 *  - utf8_truncate(valid, len, max) returns len when len <= max, else a
 *    length <= max, at most 3 bytes shorter than max, at a code point
 *    boundary (the prefix is valid). */
#include <jansson.h>
#include <stdbool.h>

#include "fuzz/fuzz.h"
#include "providers/utf8.h"

/* The WHATWG Encoding Standard's UTF-8 decoder, re-encoding as it goes
 * (a valid sequence is copied from the input). */
static char *whatwg_decode(const char *in, size_t len, size_t *out_len)
{
    const unsigned char *b = (const unsigned char *)in;
    char *out = malloc(3 * len + 1);
    if (!out)
        abort();
    size_t o = 0, start = 0;
    unsigned needed = 0, seen = 0;
    unsigned char lower = 0x80, upper = 0xBF;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = b[i];
        if (needed == 0) {
            if (c <= 0x7F) {
                out[o++] = (char)c;
            } else if (c >= 0xC2 && c <= 0xDF) {
                needed = 1;
            } else if (c >= 0xE0 && c <= 0xEF) {
                if (c == 0xE0)
                    lower = 0xA0;
                if (c == 0xED)
                    upper = 0x9F;
                needed = 2;
            } else if (c >= 0xF0 && c <= 0xF4) {
                if (c == 0xF0)
                    lower = 0x90;
                if (c == 0xF4)
                    upper = 0x8F;
                needed = 3;
            } else {
                memcpy(out + o, "\xEF\xBF\xBD", 3);
                o += 3;
            }
            start = i;
            continue;
        }
        if (c < lower || c > upper) {
            needed = seen = 0;
            lower = 0x80;
            upper = 0xBF;
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i--; /* "prepend byte to stream": look at it again */
            continue;
        }
        lower = 0x80;
        upper = 0xBF;
        if (++seen == needed) {
            memcpy(out + o, in + start, needed + 1);
            o += needed + 1;
            needed = seen = 0;
        }
    }
    if (needed) {
        memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3;
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void check_truncate(const char *s, size_t len, size_t max)
{
    size_t t = utf8_truncate(s, len, max);
    if (len <= max) {
        FUZZ_CHECK(t == len, "utf8_truncate(len %zu, max %zu) = %zu, expected len", len, max, t);
        return;
    }
    FUZZ_CHECK(t <= max, "utf8_truncate(len %zu, max %zu) = %zu > max", len, max, t);
    FUZZ_CHECK(t + 3 >= max, "utf8_truncate(len %zu, max %zu) = %zu cut more than a code point",
               len, max, t);
    FUZZ_CHECK(utf8_valid(s, t), "utf8_truncate(len %zu, max %zu) = %zu splits a code point",
               len, max, t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fz_dup(data, size, 0);
    bool valid = utf8_valid(s, size);

    json_t *j = json_stringn(size ? s : "", size);
    FUZZ_CHECK(valid == (j != NULL), "utf8_valid says %s, jansson says %s", valid ? "valid" : "invalid",
               j ? "valid" : "invalid");
    json_decref(j);

    size_t out_len = (size_t)-1;
    char *r = utf8_repair(s, size, &out_len);
    FUZZ_CHECK(r != NULL, "utf8_repair returned NULL for %zu bytes", size);
    FUZZ_CHECK(out_len <= 3 * size, "repair grew %zu bytes to %zu", size, out_len);
    FUZZ_CHECK(r[out_len] == '\0', "repair output not NUL-terminated at its length");
    FUZZ_CHECK(utf8_valid(r, out_len), "repair output is not valid UTF-8");
    if (valid)
        FUZZ_CHECK(out_len == size && memcmp(r, s, size) == 0, "repair changed valid input");
    else
        FUZZ_CHECK(out_len != size || memcmp(r, s, size) != 0, "repair kept invalid input as is");

    /* Idempotent; NULL out_len accepted. */
    size_t again_len = 0;
    char *again = utf8_repair(r, out_len, &again_len);
    FUZZ_CHECK(again && again_len == out_len && memcmp(again, r, out_len) == 0,
               "repairing the repaired text changed it");
    free(again);
    free(utf8_repair(s, size, NULL));

    /* Byte for byte what the WHATWG decoder (written independently below)
     * produces: valid sequences kept, each maximal invalid subpart → U+FFFD. */
    size_t ref_len = 0;
    char *ref = whatwg_decode(s, size, &ref_len);
    if (ref_len != out_len || memcmp(ref, r, out_len) != 0) {
        size_t k = 0;
        while (k < ref_len && k < out_len && ref[k] == r[k])
            k++;
        FUZZ_CHECK(0, "utf8_repair differs from the WHATWG decoder at output byte %zu "
                      "(lengths %zu vs %zu)", k, out_len, ref_len);
    }
    free(ref);

    if (valid) {
        size_t max = size ? data[0] % (size + 2) : 0;
        check_truncate(s, size, max);
        check_truncate(s, size, size / 2);
        check_truncate(s, size, size ? size - 1 : 0);
    }
    /* On invalid input utf8_truncate only has to stay in bounds. */
    size_t t = utf8_truncate(s, size, size / 3);
    FUZZ_CHECK(t <= size, "utf8_truncate past the end");
    check_truncate(r, out_len, out_len / 3);

    free(r);
    free(s);
    return 0;
}
