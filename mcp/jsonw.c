/* jsonw.c — JSON text writer (see jsonw.h). */
#include "mcp/jsonw.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/utf8.h"

#define JSONW_DEFAULT_MAX (SIZE_MAX / 2)
#define ESC_BLOCK (64u << 10) /* input escaped per reservation */

void jsonw_init(jsonw *w, size_t max)
{
    w->buf = NULL;
    w->len = w->cap = 0;
    w->max = max ? max : JSONW_DEFAULT_MAX;
    w->failed = false;
}

void jsonw_free(jsonw *w)
{
    free(w->buf);
    w->buf = NULL;
    w->len = w->cap = 0;
    w->failed = false;
}

void jsonw_reset(jsonw *w, size_t keep)
{
    if (w->cap > keep) {
        free(w->buf);
        w->buf = NULL;
        w->cap = 0;
    }
    w->len = 0;
    w->failed = false;
}

bool jsonw_reserve(jsonw *w, size_t extra)
{
    if (w->failed)
        return false;
    if (extra <= w->cap - w->len)
        return true;
    if (extra > w->max - w->len) {
        w->failed = true;
        return false;
    }
    size_t need = w->len + extra;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 4 ? need : cap * 2;
    if (cap > w->max)
        cap = w->max; /* so that jsonw_char, checking only cap, keeps the cap too */
    char *nb = realloc(w->buf, cap);
    if (!nb) {
        w->failed = true;
        return false;
    }
    w->buf = nb;
    w->cap = cap;
    return true;
}

void jsonw_raw(jsonw *w, const char *s, size_t n)
{
    if (n == 0 || !jsonw_reserve(w, n))
        return;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

/* ---- strings ------------------------------------------------------------ */

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* Non-zero when one of the 8 bytes of v needs escaping (< 0x20, '"', '\\'). */
static inline uint64_t needs_escape8(uint64_t v)
{
    uint64_t ctl = v - ONES * 0x20;
    uint64_t quote = (v ^ (ONES * '"')) - ONES;
    uint64_t bslash = (v ^ (ONES * '\\')) - ONES;
    return (ctl | quote | bslash) & ~v & HIGHS;
}

static const char hexdig[] = "0123456789ABCDEF";

/* Escapes s[0..n) into out (room for 6 * n bytes); returns bytes written. */
static size_t escape_into(char *out, const unsigned char *s, size_t n)
{
    char *o = out;
    size_t i = 0;
    while (i < n) {
        /* Copy a run that needs no escaping, eight bytes at a time. */
        size_t stop = n;
        while (i + 8 <= n) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            uint64_t m = needs_escape8(v);
            memcpy(o, s + i, 8); /* room: 6 * n >= i + 8 */
            if (m) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                /* The lowest flagged byte is a real one (a false flag can
                 * only sit above a real one): the bytes before it are plain. */
                size_t k = (size_t)__builtin_ctzll(m) >> 3;
                o += k;
                i += k;
                stop = i + 1;
#else
                stop = i + 8;
#endif
                break;
            }
            o += 8;
            i += 8;
        }
        if (stop > n)
            stop = n;
        for (; i < stop; i++) {
            unsigned char c = s[i];
            if (c >= 0x20 && c != '"' && c != '\\') {
                *o++ = (char)c;
                continue;
            }
            *o++ = '\\';
            switch (c) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            default:
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = hexdig[c >> 4];
                *o++ = hexdig[c & 15];
                break;
            }
        }
    }
    return (size_t)(o - out);
}

void jsonw_str_body(jsonw *w, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    while (n > 0 && !w->failed) {
        size_t part = n > ESC_BLOCK ? ESC_BLOCK : n;
        if (!jsonw_reserve(w, part * 6))
            return;
        w->len += escape_into(w->buf + w->len, u, part);
        u += part;
        n -= part;
    }
}

void jsonw_str(jsonw *w, const char *s, size_t n)
{
    jsonw_char(w, '"');
    if (n <= ESC_BLOCK && jsonw_reserve(w, n * 6 + 1)) {
        w->len += escape_into(w->buf + w->len, (const unsigned char *)s, n);
        w->buf[w->len++] = '"';
        return;
    }
    jsonw_str_body(w, s, n);
    jsonw_char(w, '"');
}

/* ---- numbers ------------------------------------------------------------ */

/* Decimal digits of v, ending at end; returns where they start. */
static char *digits(char *end, unsigned long long v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

void jsonw_int(jsonw *w, long long v)
{
    char b[24];
    char *end = b + sizeof b;
    unsigned long long u = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;
    char *p = digits(end, u);
    if (v < 0)
        *--p = '-';
    jsonw_raw(w, p, (size_t)(end - p));
}

bool jsonw_real(jsonw *w, double v)
{
    if (!isfinite(v))
        return false;
    if (v >= 0 && v < 1e15 && v == (double)(long long)v && !(v == 0 && signbit(v))) {
        /* A whole number (progress counts): "%.17g" writes its digits, and
         * jansson adds ".0". Without printf's floating-point machinery. */
        char b[24];
        char *end = b + sizeof b - 2;
        char *p = digits(end, (unsigned long long)v);
        end[0] = '.';
        end[1] = '0';
        jsonw_raw(w, p, (size_t)(end + 2 - p));
        return true;
    }
    /* jansson's jsonp_dtostr with the default precision. */
    char b[64];
    int r = snprintf(b, sizeof b, "%.17g", v);
    if (r < 0 || (size_t)r >= sizeof b - 3)
        return false;
    size_t len = (size_t)r;
    for (size_t i = 0; i < len; i++)
        if (b[i] == ',')
            b[i] = '.'; /* a locale's decimal comma (jansson's from_locale) */
    if (!memchr(b, '.', len) && !memchr(b, 'e', len)) {
        b[len++] = '.';
        b[len++] = '0';
        b[len] = '\0';
    }
    char *e = memchr(b, 'e', len);
    if (e) {
        /* No '+' and no leading zeros in the exponent. */
        char *start = e + 1, *end = start + 1;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, len - (size_t)(end - b) + 1);
            len -= (size_t)(end - start);
        }
    }
    jsonw_raw(w, b, len);
    return true;
}

/* ---- any value ---------------------------------------------------------- */

/* Deeper than this, the rest of a tree is left to jansson's own dump (which
 * has no depth limit of its own): the walk below recurses. */
#define JSONW_MAX_DEPTH 128

static int dump_cb(const char *buffer, size_t size, void *data)
{
    jsonw *w = data;
    jsonw_raw(w, buffer, size);
    return w->failed ? -1 : 0;
}

/* A string value or key; jansson's dump fails on invalid UTF-8 (possible
 * with json_string_nocheck), so this does too. */
static void put_string(jsonw *w, const char *s, size_t n)
{
    if (!utf8_valid(s, n)) {
        w->failed = true;
        return;
    }
    jsonw_str(w, s, n);
}

static void put_value(jsonw *w, const json_t *v, int depth)
{
    if (w->failed)
        return;
    switch (json_typeof(v)) {
    case JSON_STRING:
        put_string(w, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        jsonw_int(w, (long long)json_integer_value(v));
        return;
    case JSON_REAL:
        if (!jsonw_real(w, json_real_value(v)))
            w->failed = true;
        return;
    case JSON_TRUE:
        jsonw_lit(w, "true");
        return;
    case JSON_FALSE:
        jsonw_lit(w, "false");
        return;
    case JSON_NULL:
        jsonw_lit(w, "null");
        return;
    default:
        break;
    }
    if (depth >= JSONW_MAX_DEPTH) {
        if (json_dump_callback(v, dump_cb, w, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
            w->failed = true;
        return;
    }
    if (json_is_array(v)) {
        jsonw_char(w, '[');
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n && !w->failed; i++) {
            if (i)
                jsonw_char(w, ',');
            put_value(w, json_array_get(v, i), depth + 1);
        }
        jsonw_char(w, ']');
        return;
    }
    /* An object, in jansson's order (insertion order, as json_dumps
     * without JSON_SORT_KEYS). */
    jsonw_char(w, '{');
    bool first = true;
    const char *key;
    size_t klen;
    json_t *el;
    json_object_keylen_foreach((json_t *)v, key, klen, el) {
        if (!first)
            jsonw_char(w, ',');
        first = false;
        put_string(w, key, klen);
        jsonw_char(w, ':');
        put_value(w, el, depth + 1);
        if (w->failed)
            return;
    }
    jsonw_char(w, '}');
}

void jsonw_json(jsonw *w, const json_t *v)
{
    if (w->failed)
        return;
    if (!v) {
        w->failed = true;
        return;
    }
    put_value(w, v, 0);
}

