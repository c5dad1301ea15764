/* test_sse.c — the event-stream parser against the WHATWG rules.
 *
 * Every vector is fed whole, split in two at every position, split in three
 * at every pair of positions (short vectors), and byte by byte; each chunk is
 * a separate heap copy of exactly its size so the sanitizer catches reads
 * past a chunk. All of those runs must produce the same events and counters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/sse.h"

/* Vectors at most this long are also tried at every three-way split. */
#define THREE_WAY_MAX 64
#define LARGE_EVENTS 20000

typedef struct {
    const char *type;
    const char *data;
    size_t data_len;
    const char *id;
} exp_event;

#define EV(t, d, i) { (t), (d), sizeof(d) - 1, (i) }
#define IN(lit) (lit), (sizeof(lit) - 1)
#define EVENTS(...) (const exp_event[]){__VA_ARGS__}, \
    sizeof((const exp_event[]){__VA_ARGS__}) / sizeof(exp_event)
#define NO_EVENTS NULL, 0

/* V(name, input, events, comments, oversized, retry_ms, last_id) with the
 * default caps; VCAP adds max_line, max_event; VSTOP adds stop_after too. */
#define V(...) { __VA_ARGS__, 0, 0, 0 }
#define VCAP(...) { __VA_ARGS__, 0 }
#define VSTOP(...) { __VA_ARGS__ }

typedef struct {
    const char *name;
    const char *in;
    size_t in_len;
    const exp_event *ev;
    size_t n_ev;
    uint64_t comments;
    uint64_t oversized;
    long retry_ms;
    const char *last_id;
    size_t max_line, max_event;   /* 0: defaults */
    size_t stop_after;            /* callback stops after this many; 0 never */
} vector;

typedef struct {
    char *type, *data, *id;
    size_t type_len, data_len, id_len;
} rec_event;

typedef struct {
    rec_event *ev;
    size_t n, cap;
    size_t stop_after;
    bool unterminated;   /* a string passed to the callback lacked its NUL */
} recorder;

static char *dup_mem(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    assert_non_null(d);
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static int record_cb(void *ud, const sse_event *ev)
{
    recorder *r = ud;
    if (ev->type[ev->type_len] != '\0' || ev->data[ev->data_len] != '\0' ||
        ev->id[ev->id_len] != '\0')
        r->unterminated = true;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->ev = realloc(r->ev, r->cap * sizeof *r->ev);
        assert_non_null(r->ev);
    }
    rec_event *e = &r->ev[r->n++];
    e->type = dup_mem(ev->type, ev->type_len);
    e->type_len = ev->type_len;
    e->data = dup_mem(ev->data, ev->data_len);
    e->data_len = ev->data_len;
    e->id = dup_mem(ev->id, ev->id_len);
    e->id_len = ev->id_len;
    return r->stop_after && r->n == r->stop_after;
}

static void recorder_free(recorder *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->ev[i].type);
        free(r->ev[i].data);
        free(r->ev[i].id);
    }
    free(r->ev);
    memset(r, 0, sizeof *r);
}

/* Feeds one chunk from its own exact-size heap copy. */
static int feed_copy(sse_parser *p, const char *s, size_t n)
{
    char *c = malloc(n ? n : 1);
    assert_non_null(c);
    if (n)
        memcpy(c, s, n);
    int rc = sse_feed(p, c, n);
    free(c);
    return rc;
}

/* Feeds v->in cut at the given ascending positions; stops at the first
 * non-OK return like a real caller. Returns that last return code. */
static int run_cuts(const vector *v, sse_parser *p, recorder *r, const size_t *cuts, size_t ncuts)
{
    memset(r, 0, sizeof *r);
    r->stop_after = v->stop_after;
    sse_init(p, v->max_line, v->max_event, record_cb, r);
    size_t start = 0;
    int rc = SSE_OK;
    for (size_t i = 0; i <= ncuts && rc == SSE_OK; i++) {
        size_t end = i < ncuts ? cuts[i] : v->in_len;
        rc = feed_copy(p, v->in + start, end - start);
        start = end;
    }
    return rc;
}

static int run_bytewise(const vector *v, sse_parser *p, recorder *r)
{
    memset(r, 0, sizeof *r);
    r->stop_after = v->stop_after;
    sse_init(p, v->max_line, v->max_event, record_cb, r);
    int rc = SSE_OK;
    for (size_t i = 0; i < v->in_len && rc == SSE_OK; i++)
        rc = feed_copy(p, v->in + i, 1);
    return rc;
}

static void show(const char *what, const char *s, size_t n)
{
    fprintf(stderr, "  %s (%zu): \"", what, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02X", c);
    }
    fputs("\"\n", stderr);
}

static bool same(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* Compares one run with the vector's expectations; fails naming the run. */
static void check_run(const vector *v, const sse_parser *p, const recorder *r, int rc,
                      const char *how)
{
    const char *why = NULL;
    size_t max_line = v->max_line ? v->max_line : SSE_DEFAULT_MAX_LINE;
    size_t max_event = v->max_event ? v->max_event : SSE_DEFAULT_MAX_EVENT;
    int want_rc = v->stop_after && v->n_ev == v->stop_after ? SSE_ESTOPPED : SSE_OK;

    if (rc != want_rc)
        why = "return code";
    else if (r->unterminated)
        why = "callback string without NUL terminator";
    else if (r->n != v->n_ev)
        why = "number of events";
    else if (p->events != v->n_ev)
        why = "events counter";
    else if (p->comments != v->comments)
        why = "comments counter";
    else if (p->oversized != v->oversized)
        why = "oversized counter";
    else if (p->retry_ms != v->retry_ms)
        why = "retry_ms";
    else if (strcmp(sse_last_id(p), v->last_id) != 0)
        why = "last id";
    else if (p->line_cap > max_line || p->data_cap > max_event + 1)
        why = "buffer grew past its cap";
    for (size_t i = 0; !why && i < v->n_ev; i++) {
        const exp_event *e = &v->ev[i];
        const rec_event *g = &r->ev[i];
        if (!same(g->type, g->type_len, e->type, strlen(e->type)) ||
            !same(g->data, g->data_len, e->data, e->data_len) ||
            !same(g->id, g->id_len, e->id, strlen(e->id))) {
            fprintf(stderr, "event %zu differs:\n", i);
            show("want type", e->type, strlen(e->type));
            show("got  type", g->type, g->type_len);
            show("want data", e->data, e->data_len);
            show("got  data", g->data, g->data_len);
            show("want id", e->id, strlen(e->id));
            show("got  id", g->id, g->id_len);
            why = "event contents";
        }
    }
    if (why) {
        fprintf(stderr, "vector \"%s\" fed %s: %s\n", v->name, how, why);
        fprintf(stderr, "  rc %d (want %d), events %zu/%llu (want %zu), comments %llu (want %llu),"
                " oversized %llu (want %llu), retry %ld (want %ld), last id \"%s\" (want \"%s\")\n",
                rc, want_rc, r->n, (unsigned long long)p->events, v->n_ev,
                (unsigned long long)p->comments, (unsigned long long)v->comments,
                (unsigned long long)p->oversized, (unsigned long long)v->oversized,
                p->retry_ms, v->retry_ms, sse_last_id(p), v->last_id);
        show("input", v->in, v->in_len);
        fail_msg("vector \"%s\" fed %s: %s", v->name, how, why);
    }
}

static void check_vector(const vector *v)
{
    sse_parser p;
    recorder r;
    char how[96];
    int rc;

    for (size_t k = 0; k <= v->in_len; k++) {
        rc = run_cuts(v, &p, &r, &k, 1);
        snprintf(how, sizeof how, "split at %zu", k);
        check_run(v, &p, &r, rc, how);
        sse_free(&p);
        recorder_free(&r);
    }
    if (v->in_len <= THREE_WAY_MAX) {
        for (size_t a = 0; a <= v->in_len; a++)
            for (size_t b = a; b <= v->in_len; b++) {
                size_t cuts[2] = {a, b};
                rc = run_cuts(v, &p, &r, cuts, 2);
                snprintf(how, sizeof how, "split at %zu and %zu", a, b);
                check_run(v, &p, &r, rc, how);
                sse_free(&p);
                recorder_free(&r);
            }
    }
    rc = run_bytewise(v, &p, &r);
    check_run(v, &p, &r, rc, "byte by byte");
    sse_free(&p);
    recorder_free(&r);
}

static void check_vectors(const vector *vs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_vector(&vs[i]);
}

#define CHECK_ALL(vs) check_vectors((vs), sizeof(vs) / sizeof((vs)[0]))

/* ---- vectors --------------------------------------------------------- */

static void test_data_lines(void **state)
{
    (void)state;
    const vector vs[] = {
        V("single", IN("data: hello\n\n"), EVENTS(EV("message", "hello", "")), 0, 0, -1, ""),
        V("two events", IN("data: a\n\ndata: b\n\n"),
          EVENTS(EV("message", "a", ""), EV("message", "b", "")), 0, 0, -1, ""),
        V("multi-line", IN("data: line1\ndata: line2\ndata: line3\n\n"),
          EVENTS(EV("message", "line1\nline2\nline3", "")), 0, 0, -1, ""),
        V("empty data line inside", IN("data: a\ndata:\ndata: b\n\n"),
          EVENTS(EV("message", "a\n\nb", "")), 0, 0, -1, ""),
        V("field without colon is empty value", IN("data\n\n"),
          EVENTS(EV("message", "", "")), 0, 0, -1, ""),
        V("two empty data lines", IN("data\ndata\n\n"),
          EVENTS(EV("message", "\n", "")), 0, 0, -1, ""),
        V("trailing newline of data removed once", IN("data: x\ndata\n\n"),
          EVENTS(EV("message", "x\n", "")), 0, 0, -1, ""),
        V("value keeps later colons", IN("data: a:b: c\n\n"),
          EVENTS(EV("message", "a:b: c", "")), 0, 0, -1, ""),
        V("no space after colon", IN("data:x\n\n"), EVENTS(EV("message", "x", "")), 0, 0, -1, ""),
        V("only one space removed", IN("data:  x\n\n"),
          EVENTS(EV("message", " x", "")), 0, 0, -1, ""),
        V("trailing space kept", IN("data: x \n\n"),
          EVENTS(EV("message", "x ", "")), 0, 0, -1, ""),
        V("tab is not stripped", IN("data:\tx\n\n"),
          EVENTS(EV("message", "\tx", "")), 0, 0, -1, ""),
        V("blank lines between events", IN("\n\ndata: a\n\n\n\ndata: b\n\n\n"),
          EVENTS(EV("message", "a", ""), EV("message", "b", "")), 0, 0, -1, ""),
    };
    CHECK_ALL(vs);
}

static void test_line_endings(void **state)
{
    (void)state;
    const vector vs[] = {
        V("CRLF", IN("data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n"),
          EVENTS(EV("message", "a\nb", ""), EV("message", "c", "")), 0, 0, -1, ""),
        V("lone CR", IN("data: a\rdata: b\r\rdata: c\r\r"),
          EVENTS(EV("message", "a\nb", ""), EV("message", "c", "")), 0, 0, -1, ""),
        V("mixed", IN("data: a\r\ndata: b\rdata: c\n\r\ndata: d\n\r\r\n"),
          EVENTS(EV("message", "a\nb\nc", ""), EV("message", "d", "")), 0, 0, -1, ""),
        /* CR ends the line, then CRLF is one blank line */
        V("CR CRLF", IN("data: x\r\r\ndata: y\r\n\r\n"),
          EVENTS(EV("message", "x", ""), EV("message", "y", "")), 0, 0, -1, ""),
        /* LF then CR: two line ends, not one */
        V("LF CR", IN("data: x\n\rdata: y\n\n"),
          EVENTS(EV("message", "x", ""), EV("message", "y", "")), 0, 0, -1, ""),
        V("CRLF CRLF is not three lines", IN("data: x\r\n\r\n\r\n"),
          EVENTS(EV("message", "x", "")), 0, 0, -1, ""),
        V("leading blank lines of each kind", IN("\n\r\n\rdata: z\n\n"),
          EVENTS(EV("message", "z", "")), 0, 0, -1, ""),
        V("CR inside data splits the line", IN("data: a\rb\n\n"),
          EVENTS(EV("message", "a", "")), 0, 0, -1, ""),
    };
    CHECK_ALL(vs);
}

static void test_bom(void **state)
{
    (void)state;
    const vector vs[] = {
        V("BOM stripped", IN("\xEF\xBB\xBF" "data: a\n\n"),
          EVENTS(EV("message", "a", "")), 0, 0, -1, ""),
        V("BOM then comment", IN("\xEF\xBB\xBF:c\n"), NO_EVENTS, 1, 0, -1, ""),
        V("BOM then CRLF blank", IN("\xEF\xBB\xBF\r\ndata: a\r\n\r\n"),
          EVENTS(EV("message", "a", "")), 0, 0, -1, ""),
        V("BOM only", IN("\xEF\xBB\xBF"), NO_EVENTS, 0, 0, -1, ""),
        /* the second BOM is part of the field name "\xEF\xBB\xBF" "data" */
        V("second BOM not stripped", IN("\xEF\xBB\xBF\xEF\xBB\xBF" "data: a\n\ndata: b\n\n"),
          EVENTS(EV("message", "b", "")), 0, 0, -1, ""),
        V("BOM after the start not stripped", IN("data: a\n\n\xEF\xBB\xBF" "data: b\n\n"),
          EVENTS(EV("message", "a", "")), 0, 0, -1, ""),
        V("no BOM, comment counted", IN(":c\n"), NO_EVENTS, 1, 0, -1, ""),
        V("BOM bytes in data kept", IN("\xEF\xBB\xBF" "data: \xEF\xBB\xBFx\n\n"),
          EVENTS(EV("message", "\xEF\xBB\xBFx", "")), 0, 0, -1, ""),
        /* a partial BOM is kept as the start of the first line, so these
          * lines are fields named "\xEF" / "\xEF\xBB" / "\xEF\xBB\xBE", not
          * comments */
        V("EF prefix kept", IN("\xEF:c\n"), NO_EVENTS, 0, 0, -1, ""),
        V("EF BB prefix kept", IN("\xEF\xBB:c\n"), NO_EVENTS, 0, 0, -1, ""),
        V("EF BB BE is not a BOM", IN("\xEF\xBB\xBE:c\n"), NO_EVENTS, 0, 0, -1, ""),
        V("prefix then LF", IN("\xEF\xBB\ndata: a\n\n"),
          EVENTS(EV("message", "a", "")), 0, 0, -1, ""),
        V("prefix then CR", IN("\xEF\rdata: a\r\r"),
          EVENTS(EV("message", "a", "")), 0, 0, -1, ""),
        /* the kept prefix counts towards the line length: 2 + 7 > 8 */
        VCAP("prefix counts towards max_line", IN("\xEF\xBB" "data: a\n\ndata: b\n\n"),
          EVENTS(EV("message", "b", "")), 0, 1, -1, "", 8, 0),
        VCAP("prefix within max_line", IN("\xEF\xBB" "data: a\n\ndata: b\n\n"),
          EVENTS(EV("message", "b", "")), 0, 0, -1, "", 9, 0),
    };
    CHECK_ALL(vs);
}

static void test_comments(void **state)
{
    (void)state;
    const vector vs[] = {
        V("keep-alives of each ending", IN(":\n: keep-alive\r\n:ok\r"), NO_EVENTS, 3, 0, -1, ""),
        V("comment inside an event", IN("data: a\n: mid\ndata: b\n\n"),
          EVENTS(EV("message", "a\nb", "")), 1, 0, -1, ""),
        V("keep-alive blocks dispatch nothing", IN(":\n\n:\n\n"), NO_EVENTS, 2, 0, -1, ""),
        V("comment with colons and data text", IN(":data: x\n\n"), NO_EVENTS, 1, 0, -1, ""),
        /* a leading space makes it a field named " ", which is ignored */
        V("space colon is not a comment", IN(" :c\ndata: x\n\n"),
          EVENTS(EV("message", "x", "")), 0, 0, -1, ""),
    };
    CHECK_ALL(vs);
}

static void test_event_type(void **state)
{
    (void)state;
    const vector vs[] = {
        V("type then default again", IN("event: update\ndata: 1\n\ndata: 2\n\n"),
          EVENTS(EV("update", "1", ""), EV("message", "2", "")), 0, 0, -1, ""),
        V("type reset by undispatched event", IN("event: lost\n\ndata: x\n\n"),
          EVENTS(EV("message", "x", "")), 0, 0, -1, ""),
        V("empty type means message", IN("event:\ndata: e\n\n"),
          EVENTS(EV("message", "e", "")), 0, 0, -1, ""),
        V("type without colon means message", IN("event: a\nevent\ndata: e\n\n"),
          EVENTS(EV("message", "e", "")), 0, 0, -1, ""),
        V("last type wins", IN("event: a\nevent: b\ndata: c\n\n"),
          EVENTS(EV("b", "c", "")), 0, 0, -1, ""),
        V("type after data", IN("data: c\nevent: late\n\n"),
          EVENTS(EV("late", "c", "")), 0, 0, -1, ""),
        V("unknown fields ignored",
          IN("foo: bar\nDATA: no\nData: no\ndata : no\n data: no\ndatas: no\n"
            "data: yes\nbar\nEvent: no\n\n"),
          EVENTS(EV("message", "yes", "")), 0, 0, -1, ""),
    };
    CHECK_ALL(vs);
}

static void test_ids(void **state)
{
    (void)state;
    const vector vs[] = {
        V("id persists", IN("id: 1\ndata: a\n\ndata: b\n\n"),
          EVENTS(EV("message", "a", "1"), EV("message", "b", "1")), 0, 0, -1, "1"),
        V("id-only event updates last id", IN("id: 1\ndata: a\n\nid: 2\n\ndata: b\n\n"),
          EVENTS(EV("message", "a", "1"), EV("message", "b", "2")), 0, 0, -1, "2"),
        V("event without data not dispatched, id kept", IN("id: 7\nevent: x\n\n"),
          NO_EVENTS, 0, 0, -1, "7"),
        V("id with NUL ignored", IN("id: 1\ndata: a\n\nid: 2\0" "3\ndata: b\n\n"),
          EVENTS(EV("message", "a", "1"), EV("message", "b", "1")), 0, 0, -1, "1"),
        V("id with NUL does not undo an earlier id", IN("id: 4\nid: \0\ndata: b\n\n"),
          EVENTS(EV("message", "b", "4")), 0, 0, -1, "4"),
        V("empty id resets", IN("id: 1\ndata: a\n\nid\ndata: b\n\nid: 3\nid:\ndata: c\n\n"),
          EVENTS(EV("message", "a", "1"), EV("message", "b", ""), EV("message", "c", "")),
          0, 0, -1, ""),
        V("last id in event wins", IN("id: x\nid: y\ndata: z\n\n"),
          EVENTS(EV("message", "z", "y")), 0, 0, -1, "y"),
        V("id keeps second space", IN("id:  5\ndata: z\n\n"),
          EVENTS(EV("message", "z", " 5")), 0, 0, -1, " 5"),
        V("id after data in same event", IN("data: z\nid: 9\n\n"),
          EVENTS(EV("message", "z", "9")), 0, 0, -1, "9"),
    };
    CHECK_ALL(vs);
}

static void test_retry(void **state)
{
    (void)state;
    const vector vs[] = {
        V("retry digits", IN("retry: 1500\n"), NO_EVENTS, 0, 0, 1500, ""),
        V("retry zero", IN("retry: 0\n"), NO_EVENTS, 0, 0, 0, ""),
        V("retry without space", IN("retry:250\n"), NO_EVENTS, 0, 0, 250, ""),
        V("bad retry keeps previous", IN("retry: 1500\nretry: 15a\n"), NO_EVENTS, 0, 0, 1500, ""),
        V("negative retry ignored", IN("retry: -1\n"), NO_EVENTS, 0, 0, -1, ""),
        V("empty retry ignored", IN("retry:\nretry\n"), NO_EVENTS, 0, 0, -1, ""),
        V("retry with extra space ignored", IN("retry:  100\n"), NO_EVENTS, 0, 0, -1, ""),
        V("retry with inner space ignored", IN("retry: 1 000\n"), NO_EVENTS, 0, 0, -1, ""),
        V("retry with plus ignored", IN("retry: +5\n"), NO_EVENTS, 0, 0, -1, ""),
        V("retry with non-ASCII digit ignored", IN("retry: 1\xD9\xA0\n"), NO_EVENTS, 0, 0, -1, ""),
        V("huge retry saturates", IN("retry: 999999999999999999999999999\n"),
          NO_EVENTS, 0, 0, LONG_MAX, ""),
        V("retry alongside an event", IN("retry: 2000\ndata: x\n\n"),
          EVENTS(EV("message", "x", "")), 0, 0, 2000, ""),
        V("retry on an unfinished line not applied", IN("retry: 10"), NO_EVENTS, 0, 0, -1, ""),
    };
    CHECK_ALL(vs);
}

static void test_unterminated_dropped(void **state)
{
    (void)state;
    const vector vs[] = {
        V("LF-ended last event", IN("data: a\n\ndata: b\n"),
          EVENTS(EV("message", "a", "")), 0, 0, -1, ""),
        V("unfinished last line", IN("data: a\n\ndata: b"),
          EVENTS(EV("message", "a", "")), 0, 0, -1, ""),
        V("CR-ended last event", IN("data: a\n\ndata: b\r"),
          EVENTS(EV("message", "a", "")), 0, 0, -1, ""),
        V("only an unfinished event", IN("data: a"), NO_EVENTS, 0, 0, -1, ""),
        /* its id is not committed either */
        V("id of dropped event not committed", IN("id: 1\ndata: a\n\nid: 2\ndata: b\n"),
          EVENTS(EV("message", "a", "1")), 0, 0, -1, "1"),
        V("CRLF then lone CR completes", IN("data: a\r\n\r"),
          EVENTS(EV("message", "a", "")), 0, 0, -1, ""),
    };
    CHECK_ALL(vs);
}

static void test_nul_preserved(void **state)
{
    (void)state;
    const vector vs[] = {
        V("NUL in data", IN("data: a\0b\n\n"), EVENTS(EV("message", "a\0b", "")), 0, 0, -1, ""),
        V("NUL-only data lines", IN("data: \0\ndata: \0\0\n\n"),
          EVENTS(EV("message", "\0\n\0\0", "")), 0, 0, -1, ""),
        V("NUL right after colon", IN("data:\0 x\n\n"),
          EVENTS(EV("message", "\0 x", "")), 0, 0, -1, ""),
        /* "\0data" is a field name that is not "data" */
        V("NUL in field name", IN("\0data: x\ndat\0: x\n\ndata: y\n\n"),
          EVENTS(EV("message", "y", "")), 0, 0, -1, ""),
    };
    CHECK_ALL(vs);
}

/* max_line 16: "data: 0123456789" is exactly 16 bytes. */
static void test_oversized_line(void **state)
{
    (void)state;
    const vector vs[] = {
        VCAP("line at the cap", IN("data: 0123456789\n\n"),
          EVENTS(EV("message", "0123456789", "")), 0, 0, -1, "", 16, 0),
        VCAP("line one over the cap", IN("data: 0123456789A\n\ndata: ok\n\n"),
          EVENTS(EV("message", "ok", "")), 0, 1, -1, "", 16, 0),
        VCAP("oversized line drops its event, next event fine",
          IN("data: short\n\ndata: 0123456789abcdef\ndata: more\n\ndata: after\n\n"),
          EVENTS(EV("message", "short", ""), EV("message", "after", "")), 0, 1, -1, "", 16, 0),
        VCAP("oversized line before data of the same event",
          IN("data: first\ndata: 0123456789abcdefghij\ndata: x\n\ndata: ok\n\n"),
          EVENTS(EV("message", "ok", "")), 0, 1, -1, "", 16, 0),
        VCAP("oversized CRLF line", IN("data: 0123456789abcdefghij\r\n\r\ndata: ok\r\n\r\n"),
          EVENTS(EV("message", "ok", "")), 0, 1, -1, "", 16, 0),
        VCAP("oversized CR line", IN("data: 0123456789abcdefghij\r\rdata: ok\r\r"),
          EVENTS(EV("message", "ok", "")), 0, 1, -1, "", 16, 0),
        VCAP("dropped event's id and type not used",
          IN("id: 1\ndata: a\n\nevent: big\nid: 2\ndata: 0123456789abcdefghij\n\ndata: b\n\n"),
          EVENTS(EV("message", "a", "1"), EV("message", "b", "1")), 0, 1, -1, "1", 16, 0),
        VCAP("fields after the oversized line ignored until blank",
          IN("data: 0123456789abcdefghij\nid: 3\nevent: t\ndata: no\n\ndata: ok\n\n"),
          EVENTS(EV("message", "ok", "")), 0, 1, -1, "", 16, 0),
        VCAP("comments still counted in a dropped event",
          IN("data: 0123456789abcdefghij\n: hi\n\ndata: ok\n\n"),
          EVENTS(EV("message", "ok", "")), 1, 1, -1, "", 16, 0),
        VCAP("oversized comment line", IN(": 0123456789abcdefghij\ndata: x\n\ndata: y\n\n"),
          EVENTS(EV("message", "y", "")), 0, 1, -1, "", 16, 0),
        VCAP("two oversized lines in one event",
          IN("data: 0123456789abcdefghij\ndata: 0123456789abcdefghij\n\ndata: z\n\n"),
          EVENTS(EV("message", "z", "")), 0, 2, -1, "", 16, 0),
        VCAP("oversized unterminated tail", IN("data: ok\n\ndata: 0123456789abcdefghijkl"),
          EVENTS(EV("message", "ok", "")), 0, 1, -1, "", 16, 0),
        VCAP("very long line",
          IN("data: 0123456789012345678901234567890123456789012345678901234567890123456789"
            "0123456789012345678901234567890123456789\n\ndata: next\n\n"),
          EVENTS(EV("message", "next", "")), 0, 1, -1, "", 16, 0),
    };
    CHECK_ALL(vs);
}

/* max_event 16: "0123456\n01234567" is exactly 16 bytes of data. */
static void test_oversized_event(void **state)
{
    (void)state;
    const vector vs[] = {
        VCAP("data at the cap", IN("data: 0123456\ndata: 01234567\n\n"),
          EVENTS(EV("message", "0123456\n01234567", "")), 0, 0, -1, "", 64, 16),
        VCAP("data one over the cap", IN("data: 0123456\ndata: 012345678\n\ndata: ok\n\n"),
          EVENTS(EV("message", "ok", "")), 0, 1, -1, "", 64, 16),
        VCAP("one long data line", IN("data: 01234567890123456\n\ndata: ok\n\n"),
          EVENTS(EV("message", "ok", "")), 0, 1, -1, "", 64, 16),
        VCAP("many data lines counted once",
          IN("data: 0123456789\ndata: 0123456789\ndata: 0123456789\ndata: 0123456789\n"
            "data: 0123456789\n\ndata: ok\n\n"),
          EVENTS(EV("message", "ok", "")), 0, 1, -1, "", 64, 16),
        /* 17 empty data lines make 16 newlines: at the cap */
        VCAP("empty lines at the cap",
          IN("data\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\n"
            "data\ndata\ndata\ndata\ndata\n\n"),
          EVENTS(EV("message", "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n", "")), 0, 0, -1, "", 64, 16),
        VCAP("empty lines over the cap",
          IN("data\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\n"
            "data\ndata\ndata\ndata\ndata\ndata\n\ndata: ok\n\n"),
          EVENTS(EV("message", "ok", "")), 0, 1, -1, "", 64, 16),
        VCAP("type and id of the dropped event ignored",
          IN("id: 1\nevent: big\ndata: 01234567890123456\nevent: x\nid: 2\n\ndata: ok\n\n"),
          EVENTS(EV("message", "ok", "")), 0, 1, -1, "", 64, 16),
    };
    CHECK_ALL(vs);
}

static void test_callback_stop(void **state)
{
    (void)state;
    const vector vs[] = {
        /* nothing after the stopping event is looked at: not the comment,
          * not the second event */
        VSTOP("stop after first", IN("data: a\n\n:c\ndata: b\n\n"),
          EVENTS(EV("message", "a", "")), 0, 0, -1, "", 0, 0, 1),
        VSTOP("stop after second", IN("data: a\n\ndata: b\n\n:c\nretry: 5\n"),
          EVENTS(EV("message", "a", ""), EV("message", "b", "")), 0, 0, -1, "", 0, 0, 2),
        VSTOP("stop keeps id of the stopping event", IN("id: 5\ndata: a\n\nid: 6\ndata: b\n\n"),
          EVENTS(EV("message", "a", "5")), 0, 0, -1, "5", 0, 0, 1),
    };
    CHECK_ALL(vs);
}

/* ---- programmatic cases ----------------------------------------------- */

static void test_long_type_and_id(void **state)
{
    (void)state;
    char in[4096], id_want[SSE_MAX_ID + 1];
    char *o = in;

    /* type over SSE_MAX_TYPE is truncated */
    o += sprintf(o, "event: ");
    memset(o, 't', SSE_MAX_TYPE + 10);
    o += SSE_MAX_TYPE + 10;
    o += sprintf(o, "\ndata: 1\n\n");
    /* truncation does not split a code point: 255 'u' + "é" is 257 bytes */
    o += sprintf(o, "event: ");
    memset(o, 'u', SSE_MAX_TYPE - 1);
    o += SSE_MAX_TYPE - 1;
    o += sprintf(o, "\xC3\xA9\ndata: 2\n\n");
    /* an id of exactly SSE_MAX_ID is taken, one byte longer is ignored */
    o += sprintf(o, "id: ");
    memset(o, 'i', SSE_MAX_ID);
    o += SSE_MAX_ID;
    o += sprintf(o, "\ndata: 3\n\nid: ");
    memset(o, 'j', SSE_MAX_ID + 1);
    o += SSE_MAX_ID + 1;
    o += sprintf(o, "\ndata: 4\n\n");

    char t1[SSE_MAX_TYPE + 1], t2[SSE_MAX_TYPE + 1];
    memset(t1, 't', SSE_MAX_TYPE);
    t1[SSE_MAX_TYPE] = '\0';
    memset(t2, 'u', SSE_MAX_TYPE - 1);
    t2[SSE_MAX_TYPE - 1] = '\0';
    memset(id_want, 'i', SSE_MAX_ID);
    id_want[SSE_MAX_ID] = '\0';

    const exp_event ev[] = {
        {t1, "1", 1, ""}, {t2, "2", 1, ""}, {"message", "3", 1, id_want},
        {"message", "4", 1, id_want},
    };
    const vector v = {"long type and id", in, (size_t)(o - in), ev, 4, 0, 0, -1, id_want, 0, 0, 0};
    check_vector(&v);
}

static void test_reset_keeps_last_id(void **state)
{
    (void)state;
    sse_parser p;
    recorder r = {0};
    sse_init(&p, 16, 0, record_cb, &r);

    assert_int_equal(sse_feed(&p, IN("retry: 300\nid: 5\ndata: a\n\nid: 6\ndata: par")), SSE_OK);
    assert_int_equal(r.n, 1);
    sse_reset(&p);
    /* the partial line, the partial event and its id are gone; BOM stripping
     * is re-armed (so ":c" is a comment, not part of "data: par..."); the
     * last id persists into the new connection */
    assert_string_equal(sse_last_id(&p), "5");
    assert_int_equal(sse_feed(&p, IN("\xEF\xBB")), SSE_OK);
    assert_int_equal(sse_feed(&p, IN("\xBF" ":c\ntial\n\n")), SSE_OK);
    assert_int_equal(p.comments, 1);
    assert_int_equal(r.n, 1);
    assert_int_equal(sse_feed(&p, IN("data: b\n\n")), SSE_OK);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.ev[1].data, "b");
    assert_string_equal(r.ev[1].id, "5");

    /* an oversized line being skipped does not outlive a reset */
    assert_int_equal(sse_feed(&p, IN("data: 0123456789abcdefghij")), SSE_OK);
    assert_int_equal(p.oversized, 1);
    sse_reset(&p);
    assert_int_equal(sse_feed(&p, IN("data: c\n\n")), SSE_OK);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.ev[2].data, "c");

    /* nor does an event being dropped */
    assert_int_equal(sse_feed(&p, IN("data: 0123456789abcdefghij\n")), SSE_OK);
    sse_reset(&p);
    assert_int_equal(sse_feed(&p, IN("data: d\n\n")), SSE_OK);
    assert_int_equal(r.n, 4);
    assert_string_equal(r.ev[3].data, "d");

    /* counters and retry survive */
    assert_int_equal(p.events, 4);
    assert_int_equal(p.oversized, 2);
    assert_int_equal(p.retry_ms, 300);
    assert_string_equal(sse_last_id(&p), "5");
    sse_free(&p);
    recorder_free(&r);
}

static void test_set_last_id(void **state)
{
    (void)state;
    sse_parser p;
    recorder r = {0};
    sse_init(&p, 0, 0, record_cb, &r);
    assert_string_equal(sse_last_id(&p), "");
    sse_set_last_id(&p, "cursor-42");
    assert_string_equal(sse_last_id(&p), "cursor-42");
    assert_int_equal(sse_feed(&p, IN("data: a\n\n")), SSE_OK);
    assert_string_equal(r.ev[0].id, "cursor-42");

    char too_long[SSE_MAX_ID + 2];
    memset(too_long, 'x', SSE_MAX_ID + 1);
    too_long[SSE_MAX_ID + 1] = '\0';
    sse_set_last_id(&p, too_long);
    assert_string_equal(sse_last_id(&p), "cursor-42");

    sse_set_last_id(&p, NULL);
    assert_string_equal(sse_last_id(&p), "");
    sse_free(&p);
    recorder_free(&r);
}

/* Complete lines are parsed in place: no line buffer is allocated unless a
 * line straddles two feeds. */
static void test_parse_in_place(void **state)
{
    (void)state;
    sse_parser p;
    recorder r = {0};
    sse_init(&p, 0, 0, record_cb, &r);
    assert_null(p.line);
    assert_null(p.data);
    assert_int_equal(sse_feed(&p, IN("id: 1\ndata: a\n\n: ka\r\ndata: b\r\r")), SSE_OK);
    assert_int_equal(r.n, 2);
    assert_null(p.line);
    assert_int_equal(p.line_cap, 0);
    assert_int_equal(sse_feed(&p, IN("data: spl")), SSE_OK);
    assert_non_null(p.line);
    assert_int_equal(sse_feed(&p, IN("it\n\n")), SSE_OK);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.ev[2].data, "split");
    sse_free(&p);
    assert_null(p.line);
    assert_null(p.data);
    recorder_free(&r);
}

/* Feeds one line of `n` payload bytes a byte at a time and returns the line
 * buffer's capacity just before the terminator. */
static size_t line_cap_after(size_t max_line, size_t n)
{
    sse_parser p;
    recorder r = {0};
    sse_init(&p, max_line, 0, record_cb, &r);
    assert_int_equal(sse_feed(&p, IN("data:")), SSE_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sse_feed(&p, "x", 1), SSE_OK);
    size_t cap = p.line_cap;
    assert_int_equal(sse_feed(&p, IN("\n\n")), SSE_OK);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].data_len, n);
    sse_free(&p);
    recorder_free(&r);
    return cap;
}

static void test_buffers_grow_geometrically_within_caps(void **state)
{
    (void)state;
    /* doubling: a 100005-byte line lives in the next power of two */
    size_t cap = line_cap_after(1u << 20, 100000);
    assert_int_equal(cap & (cap - 1), 0);
    assert_true(cap >= 100005 && cap < 2 * 100005);
    /* but never past max_line, even when doubling would overshoot it */
    assert_int_equal(line_cap_after(100010, 100005), 100010);

    /* the data buffer likewise stops at max_event + 1 (room for the NUL) */
    sse_parser p;
    recorder r = {0};
    sse_init(&p, 0, 1000, record_cb, &r);
    for (int i = 0; i < 100; i++)
        assert_int_equal(sse_feed(&p, IN("data: 123456789\n")), SSE_OK);
    assert_int_equal(sse_feed(&p, IN("\n")), SSE_OK);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].data_len, 999);
    assert_true(p.data_cap <= 1001);
    sse_free(&p);
    recorder_free(&r);
}

/* The type and id buffers exist only once a field needs them, sized to the
 * value (a live stream holds thousands of parsers). */
static void test_field_buffers_on_demand(void **state)
{
    (void)state;
    assert_true(sizeof(sse_parser) < 256);
    sse_parser p;
    recorder r = {0};
    sse_init(&p, 0, 0, record_cb, &r);
    assert_int_equal(sse_feed(&p, IN("data: a\n\n")), SSE_OK);
    assert_null(p.type);
    assert_null(p.id);
    assert_null(p.pending_id);
    assert_string_equal(sse_last_id(&p), "");
    assert_string_equal(r.ev[0].id, "");
    assert_string_equal(r.ev[0].type, "message");

    assert_int_equal(sse_feed(&p, IN("event: log\nid: 7\ndata: b\n\n")), SSE_OK);
    assert_string_equal(r.ev[1].type, "log");
    assert_string_equal(r.ev[1].id, "7");
    assert_true(p.type_cap > 0 && p.type_cap <= 64);
    assert_true(p.id_cap > 0 && p.id_cap <= 64);

    /* a long id grows the buffers; the next short one reuses them */
    char in[2 * SSE_MAX_ID];
    int n = snprintf(in, sizeof in, "id: %0*d\ndata: c\n\nid: 9\ndata: d\n\n", 600, 8);
    assert_int_equal(sse_feed(&p, in, (size_t)n), SSE_OK);
    assert_int_equal(r.ev[2].id_len, 600);
    assert_string_equal(r.ev[3].id, "9");
    assert_true(p.id_cap <= SSE_MAX_ID + 1 && p.pending_id_cap <= SSE_MAX_ID + 1);
    /* an event without an id keeps the last one; "event:" empty is the default */
    assert_int_equal(sse_feed(&p, IN("event:\ndata: e\n\n")), SSE_OK);
    assert_string_equal(r.ev[4].id, "9");
    assert_string_equal(r.ev[4].type, "message");
    assert_int_equal(r.n, 5);
    assert_false(r.unterminated);
    sse_free(&p);
    assert_null(p.id);
    assert_null(p.type);
    assert_null(p.pending_id);
    assert_string_equal(sse_last_id(&p), "");
    recorder_free(&r);

    /* sse_set_last_id on a fresh parser allocates just that */
    sse_init(&p, 0, 0, NULL, NULL);
    assert_int_equal(sse_set_last_id(&p, "resume-1"), SSE_OK);
    assert_string_equal(sse_last_id(&p), "resume-1");
    assert_true(p.id_cap <= 64);
    assert_null(p.pending_id);
    assert_int_equal(sse_set_last_id(&p, ""), SSE_OK);
    assert_string_equal(sse_last_id(&p), "");
    sse_free(&p);
}

static void test_default_caps(void **state)
{
    (void)state;
    sse_parser p;
    recorder r = {0};
    sse_init(&p, 0, 0, record_cb, &r);
    assert_int_equal(p.max_line, SSE_DEFAULT_MAX_LINE);
    assert_int_equal(p.max_event, SSE_DEFAULT_MAX_EVENT);
    assert_int_equal(p.retry_ms, -1);

    size_t n = SSE_DEFAULT_MAX_LINE + 1;
    char *big = malloc(n + 16);
    assert_non_null(big);
    memcpy(big, "data: ", 6);
    memset(big + 6, 'z', n - 6);          /* the line is max_line + 1 bytes */
    memcpy(big + n, "\n\ndata: ok\n\n", 12);
    assert_int_equal(sse_feed(&p, big, n / 2), SSE_OK);
    assert_int_equal(sse_feed(&p, big + n / 2, n + 12 - n / 2), SSE_OK);
    assert_int_equal(p.oversized, 1);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].data, "ok");
    assert_true(p.line_cap <= SSE_DEFAULT_MAX_LINE);
    free(big);
    sse_free(&p);

    /* re-initialising after sse_free works */
    sse_init(&p, 0, 0, NULL, NULL);
    assert_int_equal(sse_feed(&p, IN("data: no callback\n\n")), SSE_OK);
    assert_int_equal(p.events, 1);
    assert_int_equal(sse_feed(&p, NULL, 0), SSE_OK);
    sse_free(&p);
    recorder_free(&r);
}

/* A stopped parser can be reset and fed the rest of the stream. */
static void test_stop_then_continue(void **state)
{
    (void)state;
    sse_parser p;
    recorder r = {.stop_after = 1};
    sse_init(&p, 0, 0, record_cb, &r);
    assert_int_equal(sse_feed(&p, IN("data: a\r")), SSE_OK);
    assert_int_equal(sse_feed(&p, IN("\r\ndata: b\n\n")), SSE_ESTOPPED);
    assert_int_equal(r.n, 1);
    /* feeding on after a stop carries on with the next line */
    assert_int_equal(sse_feed(&p, IN("data: c\n\n")), SSE_OK);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.ev[1].data, "c");
    sse_free(&p);
    recorder_free(&r);
}

static char *build_large(size_t *len)
{
    size_t cap = (size_t)LARGE_EVENTS * 64 + 16;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t o = (size_t)sprintf(s, "\xEF\xBB\xBF");
    for (int i = 0; i < LARGE_EVENTS; i++) {
        /* vary the line endings and shapes so chunk edges hit everything */
        switch (i % 4) {
        case 0:
            o += (size_t)sprintf(s + o, "id: %d\ndata: payload %d\n\n", i, i);
            break;
        case 1:
            o += (size_t)sprintf(s + o, "event: tick\r\nid: %d\r\ndata: payload\r\ndata: %d\r\n\r\n", i, i);
            break;
        case 2:
            o += (size_t)sprintf(s + o, ": ka\rid: %d\rdata: payload %d\r\r", i, i);
            break;
        default:
            o += (size_t)sprintf(s + o, "id: %d\ndata:payload %d\n: x\n\n", i, i);
            break;
        }
    }
    *len = o;
    return s;
}

static void check_large(const sse_parser *p, const recorder *r, const char *how)
{
    char want[64], id[32];
    if (r->n != LARGE_EVENTS)
        fail_msg("large stream %s: %zu events", how, r->n);
    for (int i = 0; i < LARGE_EVENTS; i++) {
        const rec_event *e = &r->ev[i];
        snprintf(want, sizeof want, i % 4 == 1 ? "payload\n%d" : "payload %d", i);
        snprintf(id, sizeof id, "%d", i);
        if (strcmp(e->data, want) != 0 || strcmp(e->id, id) != 0 ||
            strcmp(e->type, i % 4 == 1 ? "tick" : "message") != 0)
            fail_msg("large stream %s: event %d is %s/%s/%s", how, i, e->type, e->data, e->id);
    }
    assert_int_equal(p->events, LARGE_EVENTS);
    assert_int_equal(p->comments, LARGE_EVENTS / 2);
    assert_int_equal(p->oversized, 0);
    char last[32];
    snprintf(last, sizeof last, "%d", LARGE_EVENTS - 1);
    assert_string_equal(sse_last_id(p), last);
}

static void test_large_stream(void **state)
{
    (void)state;
    size_t len;
    char *s = build_large(&len);
    static const size_t chunk_sizes[] = {1, 2, 3, 7, 64, 1000, 4093, 65536, SIZE_MAX};
    char how[64];

    for (size_t c = 0; c < sizeof chunk_sizes / sizeof chunk_sizes[0]; c++) {
        sse_parser p;
        recorder r = {0};
        sse_init(&p, 0, 0, record_cb, &r);
        for (size_t i = 0; i < len;) {
            size_t n = len - i < chunk_sizes[c] ? len - i : chunk_sizes[c];
            assert_int_equal(feed_copy(&p, s + i, n), SSE_OK);
            i += n;
        }
        snprintf(how, sizeof how, "in chunks of %zu", chunk_sizes[c]);
        check_large(&p, &r, how);
        sse_free(&p);
        recorder_free(&r);
    }

    /* pseudo-random chunk sizes 1..300, fixed seed */
    uint32_t x = 2463534242u;
    sse_parser p;
    recorder r = {0};
    sse_init(&p, 0, 0, record_cb, &r);
    for (size_t i = 0; i < len;) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        size_t n = 1 + x % 300;
        if (n > len - i)
            n = len - i;
        assert_int_equal(feed_copy(&p, s + i, n), SSE_OK);
        i += n;
    }
    check_large(&p, &r, "in random chunks");
    sse_free(&p);
    recorder_free(&r);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_lines),
        cmocka_unit_test(test_field_buffers_on_demand),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_event_type),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_retry),
        cmocka_unit_test(test_unterminated_dropped),
        cmocka_unit_test(test_nul_preserved),
        cmocka_unit_test(test_oversized_line),
        cmocka_unit_test(test_oversized_event),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_long_type_and_id),
        cmocka_unit_test(test_reset_keeps_last_id),
        cmocka_unit_test(test_set_last_id),
        cmocka_unit_test(test_parse_in_place),
        cmocka_unit_test(test_buffers_grow_geometrically_within_caps),
        cmocka_unit_test(test_default_caps),
        cmocka_unit_test(test_stop_then_continue),
        cmocka_unit_test(test_large_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
