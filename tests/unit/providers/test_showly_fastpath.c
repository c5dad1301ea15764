/* test_showly_fastpath.c — the Showly event parser's fast path
 * (providers/showly.h) against its jansson path: over handwritten events
 * (valid, escaped, Unicode, surrogates, invalid UTF-8, truncated, nested,
 * odd whitespace, repeated keys), every prefix and many one-byte mutations
 * of them, and generated events, whatever the fast path does not decline
 * must emit exactly what the slow path emits and return the same code.
 * The shapes Showly really sends must not be declined. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/log.h"
#include "providers/showly.h"

/* ---- what an event parse emitted, as one comparable string --------------- */

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void putf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof tmp);
    put(b, tmp, (size_t)n);
}

/* Bytes with their length, so NULs and any byte compare exactly. */
static void put_bytes(buf *b, const char *what, const char *s, size_t n)
{
    if (!s) {
        putf(b, " %s=<null>", what);
        return;
    }
    putf(b, " %s[%zu]=", what, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '%')
            put(b, (const char *)&c, 1);
        else
            putf(b, "%%%02X", c);
    }
}

static void put_cstr(buf *b, const char *what, const char *s)
{
    put_bytes(b, what, s, s ? strlen(s) : 0);
}

static void capture(void *sink, const prov_event *ev)
{
    buf *b = sink;
    putf(b, "event kind=%d status=%d progress=%g total=%g", (int)ev->kind, (int)ev->status,
         ev->progress, ev->total);
    put_cstr(b, "provider_status", ev->provider_status);
    put_cstr(b, "url", ev->url);
    put_cstr(b, "step", ev->step);
    put_cstr(b, "message", ev->message);
    putf(b, " nlines=%zu detail=%d", ev->nlines, ev->detail != NULL);
    for (size_t i = 0; i < ev->nlines; i++) {
        const prov_log_line *l = &ev->lines[i];
        putf(b, "\n  line %zu", i);
        put_bytes(b, "text", l->text, l->len);
        put_cstr(b, "level", l->level);
        put_cstr(b, "ts", l->ts);
        put_cstr(b, "source", l->source);
    }
    if (ev->error) {
        putf(b, "\n  error http=%ld retryable=%d", ev->error->http_status,
             (int)ev->error->retryable);
        put_cstr(b, "code", ev->error->code);
        put_cstr(b, "message", ev->error->message);
    }
    put(b, "\n", 1);
}

/* ---- comparing ------------------------------------------------------------- */

typedef struct stats {
    unsigned long total, fast;
} stats;

/* Parses data as an event of `type` both ways; fails the test on any
 * difference. Returns true when the fast path handled it. */
static bool compare(stats *st, const char *type, const char *data, size_t len)
{
    /* An exact-size copy, so ASan sees any read past the end. */
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);
    sse_event ev = {.type = type, .type_len = strlen(type), .data = copy, .data_len = len,
                    .id = "", .id_len = 0};
    buf fast = {0}, slow = {0};
    int rf = showly_event_parse_fast(&ev, capture, &fast);
    bool handled = rf != SHOWLY_FAST_DECLINED;
    st->total++;
    if (handled) {
        st->fast++;
        int rs = showly_event_parse_slow(&ev, capture, &slow);
        if (rf != rs || fast.len != slow.len || (fast.len && memcmp(fast.p, slow.p, fast.len))) {
            buf shown = {0};
            put_bytes(&shown, "data", data, len);
            fail_msg("fast and slow paths differ for a %s event%s\nfast (%d):\n%s\nslow (%d):\n%s",
                     type, shown.p, rf, fast.p ? fast.p : "", rs, slow.p ? slow.p : "");
        }
    } else {
        assert_int_equal(fast.len, 0); /* declining emits nothing */
    }
    free(fast.p);
    free(slow.p);
    free(copy);
    return handled;
}

static bool compare_both(stats *st, const char *data, size_t len)
{
    bool a = compare(st, "log", data, len);
    bool b = compare(st, "status", data, len);
    return a && b;
}

#define S(lit) lit, sizeof(lit) - 1

/* ---- the inputs -------------------------------------------------------------- */

static const struct {
    const char *data;
    size_t len;
} cases[] = {
    /* the real shapes (PROVIDERS.md, tests/fakes/showly_fake.py, bench/upstream.c) */
    {S("{\"stream\":\"build\",\"lines\":[\"Cloning repository (branch main)\","
       "\"HEAD is now at 0000000\"]}")},
    {S("{\"status\":\"building\",\"at\":\"2026-11-23T16:55:00.000Z\"}")},
    {S("{\"status\":\"ready\",\"previewUrl\":\"https://s-1.preview.showly.app\","
       "\"at\":\"2026-11-23T16:55:00Z\"}")},
    {S("{\"status\":\"failed\",\"error\":{\"code\":\"build_failed\",\"message\":\"Build failed: "
       "`npm run build` exited with code 1\"},\"at\":\"2026-11-23T16:55:00Z\"}")},
    {S("{\"status\":\"canceled\"}")},
    {S("{\"status\":\"queued\"}")},
    {S("{\"status\":\"no-such-word\"}")},
    {S("{\"stream\":\"build\",\"lines\":[\"#7:12# compiling module 12\"]}")},
    /* escapes */
    {S("{\"stream\":\"build\",\"lines\":[\"tab\\there\",\"quote \\\" and \\\\ and \\/\","
       "\"\\b\\f\\n\\r\\t\",\"\\u0041\\u00e9\\u20AC\\uD83D\\uDE00\",\"\\u0000nul\"]}")},
    {S("{\"stream\":\"bu\\u0000ild\",\"level\":\"w\\u0061rn\",\"lines\":[\"x\"]}")},
    {S("{\"status\":\"re\\u0061dy\",\"previewUrl\":\"https:\\/\\/x\"}")},
    {S("{\"status\":\"failed\",\"error\":{\"code\":\"c\\u0000d\",\"message\":\"m\\n2\"}}")},
    {S("{\"lines\":[\"\\uDBFF\\uDFFF\",\"\\ud800\\udc00\",\"\\uFFFF\\uFFFE\"]}")},
    /* Unicode as UTF-8 */
    {S("{\"stream\":\"build\",\"lines\":[\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xEF\xBF\xBD\","
       "\"\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xF4\x8F\xBF\xBF\"]}")},
    {S("{\"status\":\"\xC3\xA9tat\",\"previewUrl\":\"https://\xE2\x82\xAC\"}")},
    /* lone and bad surrogate escapes (the slow path repairs them) */
    {S("{\"stream\":\"build\",\"lines\":[\"half \\ud83d\"]}")},
    {S("{\"stream\":\"build\",\"lines\":[\"low \\ude00 first\"]}")},
    {S("{\"stream\":\"build\",\"lines\":[\"\\ud83d\\u0041\"]}")},
    {S("{\"stream\":\"build\",\"lines\":[\"\\ud83d\\\\ude00\"]}")},
    {S("{\"status\":\"ready\",\"previewUrl\":\"\\udfff\"}")},
    /* invalid UTF-8 (repaired by the slow path) */
    {S("{\"stream\":\"build\",\"lines\":[\"bad \xFF byte\"]}")},
    {S("{\"stream\":\"build\",\"lines\":[\"overlong \xC0\xAF\"]}")},
    {S("{\"stream\":\"build\",\"lines\":[\"surrogate \xED\xA0\x80\"]}")},
    {S("{\"stream\":\"build\",\"lines\":[\"too big \xF4\x90\x80\x80\"]}")},
    {S("{\"stream\":\"build\",\"lines\":[\"truncated \xE2\x82\"]}")},
    {S("{\"stream\":\"build\",\"lines\":[\"ok\"]} \xC3")},
    {S("{\"status\":\"fa\xC3iled\"}")},
    /* bad escapes, control characters */
    {S("{\"stream\":\"build\",\"lines\":[\"\\x41\"]}")},
    {S("{\"stream\":\"build\",\"lines\":[\"\\u12G4\"]}")},
    {S("{\"stream\":\"build\",\"lines\":[\"\\u12\"]}")},
    {S("{\"stream\":\"build\",\"lines\":[\"raw\ttab\"]}")},
    {S("{\"stream\":\"build\",\"lines\":[\"raw\nnewline\"]}")},
    {S("{\"stream\":\"build\",\"lines\":[\"del \x7F ok\"]}")},
    /* odd whitespace, other orders, extra members */
    {S(" \r\n\t{ \"lines\" : [ \"a\" , \"b\" ] ,\n \"stream\" : \"build\" , \"level\":\"error\" }\n ")},
    {S("{\n \"status\": \"ready\",\n \"previewUrl\": \"https://x\"\n}")},
    {S("{\"at\":\"t\",\"extra\":null,\"flag\":true,\"off\":false,\"tags\":[\"a\",null],"
       "\"meta\":{\"k\":\"v\",\"n\":null},\"status\":\"building\"}")},
    {S("{\"lines\":[\"a\"],\"stream\":null,\"level\":true}")},
    {S("{\"lines\":[\"a\"],\"stream\":[\"x\"],\"level\":{\"a\":\"b\"}}")},
    {S("{\"status\":null,\"previewUrl\":false,\"error\":\"a string\"}")},
    {S("{\"status\":[\"ready\"],\"error\":[\"x\"]}")},
    {S("{\"status\":\"failed\",\"error\":{}}")},
    {S("{\"status\":\"failed\",\"error\":null}")},
    {S("{\"status\":\"failed\",\"error\":{\"code\":null,\"message\":true,\"x\":\"y\"}}")},
    {S("{\"status\":\"ready\",\"error\":{\"code\":\"x\"}}")},
    {S("{}")},
    {S("{ }")},
    {S("{\"lines\":[]}")},
    {S("{\"lines\":[ ]}")},
    {S("{\"lines\":[null,true,false]}")},
    {S("{\"lines\":[null,\"only one\",false]}")},
    {S("{\"lines\":\"not an array\"}")},
    {S("{\"lines\":[\"\"]}")},
    {S("{\"lines\":[\"a\"],\"lines2\":[\"b\"],\"Stream\":\"s\"}")},
    {S("{\"\xC3\xA9\":\"key in UTF-8\",\"lines\":[\"a\"]}")},
    /* what the fast path leaves to jansson */
    {S("{\"lines\":[\"a\"],\"lines\":[\"b\"]}")},
    {S("{\"status\":\"building\",\"status\":\"ready\"}")},
    {S("{\"status\":\"failed\",\"error\":{\"code\":\"a\",\"code\":\"b\"}}")},
    {S("{\"status\":\"failed\",\"error\":{\"code\":\"a\"},\"error\":null}")},
    {S("{\"stream\":\"build\",\"lines\":[{\"text\":\"obj\",\"level\":\"warn\",\"ts\":\"t\"},\"s\"]}")},
    {S("{\"lines\":[[\"nested\"]]}")},
    {S("{\"lines\":[\"a\"],\"n\":1}")},
    {S("{\"status\":\"ready\",\"progress\":12.5e3}")},
    {S("{\"status\":\"ready\",\"x\":-0}")},
    {S("{\"lin\\u0065s\":[\"escaped key\"]}")},
    {S("{\"status\":\"ready\",\"meta\":{\"deep\":{\"er\":\"x\"}}}")},
    {S("{\"status\":\"ready\",\"meta\":{\"a\":[1]}}")},
    {S("[\"not an object\"]")},
    {S("\"a string\"")},
    {S("null")},
    {S("")},
    {S("   ")},
    {S("\xEF\xBB\xBF{\"status\":\"ready\"}")},
    {S("{\"status\":\"ready\"} x")},
    {S("{\"status\":\"ready\"}{}")},
    {S("{\"status\":\"ready\",}")},
    {S("{\"status\":\"ready\" \"x\":\"y\"}")},
    {S("{\"status\" \"ready\"}")},
    {S("{status:\"ready\"}")},
    {S("{'status':'ready'}")},
    {S("{\"lines\":[\"a\",]}")},
    {S("{\"lines\":[\"a\" \"b\"]}")},
    {S("{\"status\":nul}")},
    {S("{\"status\":nullx}")},
    {S("{\"status\":True}")},
    {S("{\"lines\":[\"a\"],\"s\":\"\\u0000\",\"k\\u0000\":\"v\"}")},
    {S("{\"a\x00b\":\"v\",\"lines\":[\"x\"]}")},
    {S("{\"lines\":[\"x\"]}\x00")},
    {S("{\"lines\":[\"\\")},
    {S("{\"lines\":[\"\\u")},
    {S("{\"lines\":[\"\\ud83d\\u")},
};

static void test_cases(void **state)
{
    (void)state;
    stats st = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        compare_both(&st, cases[i].data, cases[i].len);
    print_message("%lu of %lu parses took the fast path\n", st.fast, st.total);
}

/* Every prefix of every case (truncated events), and every case with each
 * byte replaced by bytes that matter to the scanner or to UTF-8. */
static void test_truncations_and_mutations(void **state)
{
    (void)state;
    static const unsigned char subst[] = {'"', '\\', '{', '}', '[', ']', ',', ':', ' ', '\n',
                                          0x00, 0x1F, 0x7F, 0x80, 0xBF, 0xC3, 0xE2, 0xED,
                                          0xF0, 0xF4, 0xFF, 'u', '0', 'D', 'n', 't', '/'};
    stats st = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *d = cases[i].data;
        size_t n = cases[i].len;
        for (size_t k = 0; k <= n; k++)
            compare_both(&st, d, k);
        char *m = malloc(n + 1);
        assert_non_null(m);
        for (size_t k = 0; k < n; k++) {
            for (size_t j = 0; j < sizeof subst; j++) {
                memcpy(m, d, n);
                m[k] = (char)subst[j];
                compare_both(&st, m, n);
            }
            /* and the byte deleted */
            memcpy(m, d, k);
            memcpy(m + k, d + k + 1, n - k - 1);
            compare_both(&st, m, n - 1);
        }
        free(m);
    }
    print_message("%lu of %lu parses took the fast path\n", st.fast, st.total);
    assert_true(st.fast > st.total / 10);
}

/* ---- generated events -------------------------------------------------------- */

static uint32_t rng_state = 0x2545F491u;

static uint32_t rnd(void)
{
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

static size_t below(size_t n) { return n ? rnd() % n : 0; }

static void gen_ws(buf *b)
{
    static const char *const ws[] = {"", "", "", "", " ", "\n", "\r\n", "\t", "  "};
    const char *w = ws[below(sizeof ws / sizeof ws[0])];
    put(b, w, strlen(w));
}

static void gen_string(buf *b)
{
    static const char *const pieces[] = {
        "a", "build", "Compiled successfully", " ", "x y z", "0123456789abcdef",
        "\\n", "\\t", "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\r", "\\u0041", "\\u00e9",
        "\\u20ac", "\\uFFFD", "\\u0000", "\\u001f", "\\ud83d\\ude00", "\\uD800\\uDC00",
        "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xEF\xBF\xBF", "\x7F",
        /* rarely: what the fast path must decline */
        "\\ud83d", "\\ude00", "\xFF", "\xC3", "\xED\xA0\x80", "\x01", "\\x", "\\u12",
    };
    size_t npieces = sizeof pieces / sizeof pieces[0];
    put(b, "\"", 1);
    size_t n = below(6);
    for (size_t i = 0; i < n; i++) {
        /* the last 9 pieces are the bad ones: pick them 1 time in 40 */
        size_t k = below(40) == 0 ? npieces - 1 - below(9) : below(npieces - 9);
        put(b, pieces[k], strlen(pieces[k]));
    }
    put(b, "\"", 1);
}

static void gen_scalar(buf *b)
{
    switch (below(10)) {
    case 0: put(b, S("null")); break;
    case 1: put(b, S("true")); break;
    case 2: put(b, S("false")); break;
    case 3: put(b, S("42")); break;
    default: gen_string(b); break;
    }
}

static void gen_value(buf *b, int depth)
{
    size_t k = below(10);
    if (depth < 2 && k == 0) {
        put(b, "[", 1);
        size_t n = below(4);
        for (size_t i = 0; i < n; i++) {
            if (i)
                put(b, ",", 1);
            gen_ws(b);
            gen_value(b, depth + 1);
            gen_ws(b);
        }
        put(b, "]", 1);
    } else if (depth < 2 && k == 1) {
        put(b, "{", 1);
        size_t n = below(3);
        static const char *const keys[] = {"\"code\"", "\"message\"", "\"k\""};
        for (size_t i = 0; i < n; i++) {
            if (i)
                put(b, ",", 1);
            const char *key = keys[below(3)];
            put(b, key, strlen(key));
            gen_ws(b);
            put(b, ":", 1);
            gen_ws(b);
            gen_value(b, depth + 1);
        }
        put(b, "}", 1);
    } else {
        gen_scalar(b);
    }
}

static void gen_event(buf *b)
{
    static const char *const keys[] = {"stream", "lines", "level", "status", "previewUrl",
                                       "error", "at", "id"};
    put(b, "{", 1);
    gen_ws(b);
    size_t n = below(5);
    for (size_t i = 0; i < n; i++) {
        if (i) {
            put(b, ",", 1);
            gen_ws(b);
        }
        const char *key = keys[below(sizeof keys / sizeof keys[0])];
        putf(b, "\"%s\"", key);
        gen_ws(b);
        put(b, ":", 1);
        gen_ws(b);
        if (strcmp(key, "lines") == 0 && below(4) != 0) {
            put(b, "[", 1);
            size_t m = below(5);
            for (size_t j = 0; j < m; j++) {
                if (j)
                    put(b, ",", 1);
                gen_ws(b);
                if (below(12) == 0)
                    gen_value(b, 1);
                else
                    gen_string(b);
            }
            put(b, "]", 1);
        } else if (strcmp(key, "error") == 0 && below(3) != 0) {
            put(b, "{\"code\":", 8);
            gen_string(b);
            put(b, ",\"message\":", 11);
            gen_string(b);
            put(b, "}", 1);
        } else {
            gen_value(b, 0);
        }
        gen_ws(b);
    }
    put(b, "}", 1);
    gen_ws(b);
}

static void test_generated(void **state)
{
    (void)state;
    stats st = {0};
    for (int i = 0; i < 120000; i++) {
        buf b = {0};
        gen_event(&b);
        compare_both(&st, b.p, b.len);
        /* and a truncated or corrupted copy now and then */
        if (b.len > 1 && below(4) == 0) {
            compare_both(&st, b.p, below(b.len));
            b.p[below(b.len)] = (char)rnd();
            compare_both(&st, b.p, b.len);
        }
        free(b.p);
    }
    print_message("%lu of %lu parses took the fast path\n", st.fast, st.total);
    assert_true(st.fast > st.total / 4);
}

/* Long lines and many lines: the scratch space moves to the heap, the line
 * array grows. */
static void test_large(void **state)
{
    (void)state;
    stats st = {0};
    buf b = {0};
    put(&b, S("{\"stream\":\"build\",\"level\":\"warn\",\"lines\":["));
    for (int i = 0; i < 5000; i++) {
        if (i)
            put(&b, ",", 1);
        putf(&b, "\"line %d \\t with \\\"escapes\\\" \\u00e9 and padding ", i);
        for (int k = 0; k < i % 50; k++)
            put(&b, "xyz\xC3\xA9", 5);
        put(&b, "\"", 1);
    }
    put(&b, S("]}"));
    assert_true(compare(&st, "log", b.p, b.len));
    free(b.p);

    memset(&b, 0, sizeof b);
    put(&b, S("{\"status\":\"failed\",\"error\":{\"code\":\"build_failed\",\"message\":\""));
    for (int i = 0; i < 4000; i++)
        put(&b, S("long \\\"message\\\" "));
    put(&b, S("\"},\"previewUrl\":\""));
    for (int i = 0; i < 2000; i++)
        put(&b, S("\\u00e9"));
    put(&b, S("\"}"));
    assert_true(compare(&st, "status", b.p, b.len));
    free(b.p);
}

/* The shapes Showly sends take the fast path. */
static void test_fast_path_taken(void **state)
{
    (void)state;
    stats st = {0};
    for (size_t i = 0; i < 13; i++)
        assert_true(compare_both(&st, cases[i].data, cases[i].len));
    /* unknown event types are ignored by both, before any parsing */
    assert_true(compare(&st, "message", S("{\"status\":\"ready\"}")));
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_path_taken),
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_truncations_and_mutations),
        cmocka_unit_test(test_generated),
        cmocka_unit_test(test_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
