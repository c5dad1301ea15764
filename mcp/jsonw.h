/* jsonw.h — a JSON text writer into a growable byte buffer, for the hot
 * output paths (notifications, tool results) that would otherwise build a
 * jansson tree only to serialize it at once.
 *
 * What it writes is byte for byte what jansson's json_dumps(JSON_COMPACT)
 * writes for the same values: strings escape `"`, `\`, and the control
 * characters below U+0020 (\b \f \n \r \t, else \u00XX with upper-case hex);
 * everything else, U+007F and non-ASCII included, passes through; reals use
 * jansson's "%.17g" with ".0" appended to integral values.
 *
 * Errors are sticky: once memory runs out or the text would pass the cap
 * given to jsonw_init, `failed` is set and every further write is ignored;
 * check it once at the end. */
#ifndef DEPLOY_MCP_JSONW_H
#define DEPLOY_MCP_JSONW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct jsonw {
    char *buf;
    size_t len, cap;
    size_t max;      /* the text may not grow past this many bytes */
    bool failed;     /* out of memory or past max: the text is unusable */
} jsonw;

/* An empty writer whose text may grow to `max` bytes (0: no cap but SIZE_MAX/2). */
void jsonw_init(jsonw *w, size_t max);

/* Releases the buffer (the writer may be initialised again). */
void jsonw_free(jsonw *w);

/* Empties the text and clears `failed`; keeps the buffer for reuse, except
 * one grown past `keep` bytes, which is released (a single huge message
 * does not pin its memory). */
void jsonw_reset(jsonw *w, size_t keep);

/* Makes room for `extra` more bytes; false (and failed) when it cannot. */
bool jsonw_reserve(jsonw *w, size_t extra);

/* Raw bytes, copied as they are (already JSON text). */
void jsonw_raw(jsonw *w, const char *s, size_t n);

/* A string literal's bytes: jsonw_lit(w, "{\"a\":"). */
#define jsonw_lit(w, lit) jsonw_raw((w), (lit), sizeof(lit) - 1)

static inline void jsonw_char(jsonw *w, char c)
{
    if (w->len < w->cap && !w->failed)
        w->buf[w->len++] = c;
    else
        jsonw_raw(w, &c, 1);
}

/* A JSON string: quoted and escaped. s[0..n) must be valid UTF-8 (check with
 * utf8_valid (providers/utf8.h) where that is not known); NUL bytes are written as
 * \u0000, as jansson does. */
void jsonw_str(jsonw *w, const char *s, size_t n);

/* A NUL-terminated C string as a JSON string (same rule). */
static inline void jsonw_cstr(jsonw *w, const char *s) { jsonw_str(w, s, strlen(s)); }

/* The escaped body of a JSON string, without the quotes. */
void jsonw_str_body(jsonw *w, const char *s, size_t n);

/* An integer (json_int_t). */
void jsonw_int(jsonw *w, long long v);

/* A real as jansson writes it. Returns false without writing anything when
 * v is not finite (jansson has no such value: json_real fails). */
bool jsonw_real(jsonw *w, double v);

/* Any jansson value, compact (as json_dumps with JSON_COMPACT |
 * JSON_ENCODE_ANY). Strings and integers are written directly; other values
 * through json_dump_callback. */
void jsonw_json(jsonw *w, const json_t *v);

#endif
