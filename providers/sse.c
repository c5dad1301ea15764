/* sse.c — incremental WHATWG event-stream parser (see sse.h for the rules).
 *
 * Bytes are not decoded: field values are passed through as bytes (callers
 * repair UTF-8 before putting them into JSON), so only the BOM and the line
 * terminators are looked at byte-wise.
 *
 * An event discarded for exceeding a cap is dropped whole: its remaining
 * lines are ignored up to the blank line that ends it, and its "id" (if any)
 * does not become the last event id. Comment lines are still counted.
 *
 * After SSE_ENOMEM the rest of that chunk is lost and the parser may be in
 * the middle of a line: the caller should sse_reset and reconnect. */
#include "providers/sse.h"
#include "providers/utf8.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define SSE_INITIAL_CAP 256
#define SSE_FIELD_INITIAL_CAP 32   /* event type and id buffers */
/* Caps are clamped so that sums of lengths (each bounded by a cap) cannot
 * overflow size_t. */
#define SSE_MAX_CAP (SIZE_MAX / 4)

static const unsigned char BOM[] = {0xEF, 0xBB, 0xBF};
#define BOM_LEN sizeof BOM

static const char DEFAULT_TYPE[] = "message";

/* Grows *buf to hold at least `need` bytes, doubling from `initial` but
 * never past `limit` (callers guarantee need <= limit). */
static int grow_from(char **buf, size_t *cap, size_t need, size_t limit, size_t initial)
{
    if (need <= *cap)
        return SSE_OK;
    size_t ncap = *cap ? *cap : initial;
    while (ncap < need)
        ncap = ncap > limit / 2 ? limit : ncap * 2;
    if (ncap > limit)
        ncap = limit;
    char *nb = realloc(*buf, ncap);
    if (!nb)
        return SSE_ENOMEM;
    *buf = nb;
    *cap = ncap;
    return SSE_OK;
}

static int grow(char **buf, size_t *cap, size_t need, size_t limit)
{
    return grow_from(buf, cap, need, limit, SSE_INITIAL_CAP);
}

/* Copies n bytes of a field value (plus a NUL) into a small on-demand
 * buffer capped at limit bytes (n < limit). */
static int set_field(char **buf, size_t *cap, size_t *len, const char *v, size_t n,
                     size_t limit)
{
    int rc = grow_from(buf, cap, n + 1, limit, SSE_FIELD_INITIAL_CAP);
    if (rc != SSE_OK)
        return rc;
    if (n)
        memcpy(*buf, v, n);
    (*buf)[n] = '\0';
    *len = n;
    return SSE_OK;
}

/* Forgets the event being built (data, type, and the id it set). */
static void clear_event(sse_parser *p)
{
    p->data_len = 0;
    p->type_len = 0;
    p->id_set = false;
    p->event_broken = false;
}

/* A line or an event went over its cap: drop the event being built and
 * ignore its remaining lines up to the blank line that ends it. */
static void discard_event(sse_parser *p)
{
    clear_event(p);
    p->event_broken = true;
    p->oversized++;
}

static int dispatch(sse_parser *p)
{
    if (p->event_broken) {
        clear_event(p);
        return SSE_OK;
    }
    /* The id is committed even when no event is dispatched (spec step 1):
     * the pending buffer becomes the last id's (the two swap). */
    if (p->id_set) {
        char *b = p->id;
        size_t cap = p->id_cap;
        p->id = p->pending_id;
        p->id_cap = p->pending_id_cap;
        p->id_len = p->pending_id_len;
        p->pending_id = b;
        p->pending_id_cap = cap;
        p->pending_id_len = 0;
    }
    if (p->data_len == 0) {
        clear_event(p);
        return SSE_OK;
    }
    /* Every data line appended a '\n'; the last one becomes the terminator. */
    p->data[p->data_len - 1] = '\0';
    sse_event ev = {
        .type = p->type_len ? p->type : DEFAULT_TYPE,
        .type_len = p->type_len ? p->type_len : sizeof DEFAULT_TYPE - 1,
        .data = p->data,
        .data_len = p->data_len - 1,
        .id = p->id ? p->id : "",
        .id_len = p->id_len,
    };
    /* Reset before calling back so the parser is consistent if it stops;
     * the buffers' contents stay untouched until the next feed. */
    clear_event(p);
    p->events++;
    if (p->cb && p->cb(p->ud, &ev) != 0)
        return SSE_ESTOPPED;
    return SSE_OK;
}

/* An empty value is not a number, so it does not count as digits. */
static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static bool field_is(const char *name, size_t n, const char *want)
{
    size_t wn = strlen(want);
    return n == wn && memcmp(name, want, wn) == 0;
}

static int append_data(sse_parser *p, const char *v, size_t vn)
{
    /* Dispatched length would be data_len + vn (the buffer already holds a
     * '\n' after each earlier line, and this line's '\n' is dropped). */
    if (vn > p->max_event || p->data_len > p->max_event - vn) {
        discard_event(p);
        return SSE_OK;
    }
    int rc = grow(&p->data, &p->data_cap, p->data_len + vn + 1, p->max_event + 1);
    if (rc != SSE_OK)
        return rc;
    if (vn)
        memcpy(p->data + p->data_len, v, vn);
    p->data_len += vn;
    p->data[p->data_len++] = '\n';
    return SSE_OK;
}

static void set_retry(sse_parser *p, const char *v, size_t vn)
{
    if (!all_digits(v, vn))
        return;
    long ms = 0;
    for (size_t i = 0; i < vn; i++) {
        int d = v[i] - '0';
        if (ms > (LONG_MAX - d) / 10) {   /* saturate absurdly long values */
            ms = LONG_MAX;
            break;
        }
        ms = ms * 10 + d;
    }
    p->retry_ms = ms;
}

/* Interprets one complete line (without its terminator). */
static int process_line(sse_parser *p, const char *line, size_t n)
{
    if (n == 0)
        return dispatch(p);
    if (line[0] == ':') {
        p->comments++;
        return SSE_OK;
    }
    if (p->event_broken)
        return SSE_OK;

    const char *colon = memchr(line, ':', n);
    size_t name_len = colon ? (size_t)(colon - line) : n;
    const char *v = colon ? colon + 1 : line + n;
    size_t vn = n - (size_t)(v - line);
    if (vn > 0 && v[0] == ' ') {
        v++;
        vn--;
    }

    if (field_is(line, name_len, "data"))
        return append_data(p, v, vn);
    if (field_is(line, name_len, "event")) {
        size_t tn = utf8_truncate(v, vn, SSE_MAX_TYPE);
        p->type_len = 0;
        if (tn == 0)
            return SSE_OK; /* "event:" with no value: the default type */
        return set_field(&p->type, &p->type_cap, &p->type_len, v, tn, SSE_MAX_TYPE + 1);
    } else if (field_is(line, name_len, "id")) {
        if (vn <= SSE_MAX_ID && !memchr(v, '\0', vn)) {
            int rc = set_field(&p->pending_id, &p->pending_id_cap, &p->pending_id_len, v, vn,
                               SSE_MAX_ID + 1);
            if (rc != SSE_OK)
                return rc;
            p->id_set = true;
        }
    } else if (field_is(line, name_len, "retry")) {
        set_retry(p, v, vn);
    }
    /* any other field is ignored */
    return SSE_OK;
}

/* Adds the unterminated part of a line to the line buffer, or starts
 * skipping the line if that takes it over max_line. */
static int buffer_partial(sse_parser *p, const char *seg, size_t n)
{
    if (n > p->max_line - p->line_len) {
        p->line_len = 0;
        p->skipping_line = true;
        discard_event(p);
        return SSE_OK;
    }
    int rc = grow(&p->line, &p->line_cap, p->line_len + n, p->max_line);
    if (rc != SSE_OK)
        return rc;
    if (n)
        memcpy(p->line + p->line_len, seg, n);
    p->line_len += n;
    return SSE_OK;
}

static size_t find_eol(const char *buf, size_t i, size_t len)
{
    while (i < len && buf[i] != '\n' && buf[i] != '\r')
        i++;
    return i;
}

/* Strips one leading BOM, which may arrive split across feeds; advances *pos
 * past the BOM bytes found in buf. */
static int skip_bom(sse_parser *p, const char *buf, size_t len, size_t *pos)
{
    while (!p->bom_checked && *pos < len) {
        if ((unsigned char)buf[*pos] != BOM[p->bom_seen]) {
            /* Not a BOM after all: the bytes held back start the first line. */
            p->bom_checked = true;
            return buffer_partial(p, (const char *)BOM, p->bom_seen);
        }
        (*pos)++;
        if (++p->bom_seen == BOM_LEN)
            p->bom_checked = true;
    }
    return SSE_OK;
}

void sse_init(sse_parser *p, size_t max_line, size_t max_event, sse_event_cb cb, void *ud)
{
    memset(p, 0, sizeof *p);
    p->retry_ms = -1;
    p->cb = cb;
    p->ud = ud;
    p->max_line = max_line ? max_line : SSE_DEFAULT_MAX_LINE;
    p->max_event = max_event ? max_event : SSE_DEFAULT_MAX_EVENT;
    if (p->max_line > SSE_MAX_CAP)
        p->max_line = SSE_MAX_CAP;
    if (p->max_event > SSE_MAX_CAP)
        p->max_event = SSE_MAX_CAP;
}

int sse_feed(sse_parser *p, const char *buf, size_t len)
{
    size_t i = 0;
    int rc = skip_bom(p, buf, len, &i);
    if (rc != SSE_OK)
        return rc;

    if (p->last_was_cr && i < len) {
        /* The previous feed ended in CR: an LF here completes that CRLF. */
        p->last_was_cr = false;
        if (buf[i] == '\n')
            i++;
    }

    while (i < len) {
        size_t eol = find_eol(buf, i, len);
        const char *seg = buf + i;
        size_t n = eol - i;

        if (eol == len) {
            /* No terminator in this chunk: the line goes on in the next. */
            return p->skipping_line ? SSE_OK : buffer_partial(p, seg, n);
        }

        /* Consume the terminator before acting on the line, so the state is
         * right for the next feed even if the callback stops us. */
        i = eol + 1;
        if (buf[eol] == '\r') {
            if (i == len)
                p->last_was_cr = true;
            else if (buf[i] == '\n')
                i++;
        }

        if (p->skipping_line) {
            p->skipping_line = false;   /* the oversized line ends here */
            continue;
        }
        if (p->line_len == 0) {
            /* Whole line inside this chunk: parse it in place. */
            if (n > p->max_line) {
                discard_event(p);
                continue;
            }
            rc = process_line(p, seg, n);
        } else {
            /* Completes a line begun in an earlier feed. */
            rc = buffer_partial(p, seg, n);
            if (rc != SSE_OK)
                return rc;
            if (p->skipping_line) {
                p->skipping_line = false;   /* went over max_line, ends here */
                continue;
            }
            size_t line_len = p->line_len;
            p->line_len = 0;
            rc = process_line(p, p->line, line_len);
        }
        if (rc != SSE_OK)
            return rc;
    }
    return SSE_OK;
}

void sse_reset(sse_parser *p)
{
    clear_event(p);
    p->line_len = 0;
    p->skipping_line = false;
    p->last_was_cr = false;
    p->bom_checked = false;
    p->bom_seen = 0;
}

const char *sse_last_id(const sse_parser *p)
{
    return p->id ? p->id : "";
}

int sse_set_last_id(sse_parser *p, const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n > SSE_MAX_ID)   /* same rule as an "id" field: too long is ignored */
        return SSE_OK;
    if (n == 0) {
        p->id_len = 0;
        if (p->id)
            p->id[0] = '\0';
        return SSE_OK;
    }
    return set_field(&p->id, &p->id_cap, &p->id_len, id, n, SSE_MAX_ID + 1);
}

void sse_free(sse_parser *p)
{
    free(p->line);
    free(p->data);
    free(p->type);
    free(p->id);
    free(p->pending_id);
    p->line = p->data = p->type = p->id = p->pending_id = NULL;
    p->line_len = p->line_cap = 0;
    p->data_len = p->data_cap = 0;
    p->type_len = p->type_cap = 0;
    p->id_len = p->id_cap = 0;
    p->pending_id_len = p->pending_id_cap = 0;
    p->id_set = false;
}
