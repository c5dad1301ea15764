/* fuzz_sse.c — the incremental SSE parser (providers/sse.h).
 *
 * Input: 8 control bytes, then the stream.
 *   [0] max_line, [1] max_event: index into `caps` (0 = the defaults)
 *   [2] split mode %4: one feed, fixed pieces, byte by byte, random sizes
 *       (including empty feeds)   [3] piece size (%64 + 1)
 *   [4] bit0 clear: (b>>2)%8 sse_reset points at PRNG-chosen offsets;
 *       bit1: start from a last event id set with sse_set_last_id
 *   [5] odd: stop from the callback after event (b/2)%n + 1
 *   [6..7] PRNG seed
 * The stream is parsed four ways and the results must agree:
 *   - a reference model written from sse.h's rules (whole input, line by line);
 *   - the parser fed one chunk per connection (sse_reset at the same offsets);
 *   - the parser fed in pieces whose sizes come from the control bytes
 *     (fixed, random, 1-byte, with empty feeds), the same resets;
 *   - the same pieces with the callback stopping after k events: the events up
 *     to the stop must be a prefix of the others, SSE_ESTOPPED must come back,
 *     and after sse_reset the parser must carry on sanely.
 * Every dispatched event is checked: type non-empty, within SSE_MAX_TYPE, no
 * line breaks; data_len <= max_event, no CR; id within SSE_MAX_ID, no NUL or
 * line breaks; all three NUL-terminated at their lengths. Counters (events,
 * comments, oversized, retry) and the last event id must agree too. */
#include <limits.h>
#include <stdbool.h>

#include "fuzz/fuzz.h"
#include "mcp/log.h"
#include "providers/sse.h"
#include "providers/utf8.h"

static const size_t caps[] = {0, 1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 64, 100, 300, 1024, 4096};
#define NCAPS (sizeof caps / sizeof caps[0])
#define MAX_RESETS 8

typedef struct ev_rec {
    char *type, *data, *id;
    size_t type_len, data_len, id_len;
} ev_rec;

typedef struct ev_list {
    ev_rec *v;
    size_t n, cap;
} ev_list;

typedef struct outcome {
    ev_list evs;
    uint64_t events, comments, oversized;
    long retry_ms;
    char last_id[SSE_MAX_ID + 1];
    size_t last_id_len;
} outcome;

static void push(ev_list *l, const char *type, size_t tl, const char *data, size_t dl,
                 const char *id, size_t il)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v)
            abort();
    }
    ev_rec *e = &l->v[l->n++];
    e->type = fz_dup(type, tl, 1);
    e->data = fz_dup(data, dl, 1);
    e->id = fz_dup(id, il, 1);
    e->type_len = tl;
    e->data_len = dl;
    e->id_len = il;
}

static void list_free(ev_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].type);
        free(l->v[i].data);
        free(l->v[i].id);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

static bool same_event(const ev_rec *a, const ev_rec *b)
{
    return a->type_len == b->type_len && memcmp(a->type, b->type, a->type_len) == 0 &&
           a->data_len == b->data_len && memcmp(a->data, b->data, a->data_len) == 0 &&
           a->id_len == b->id_len && memcmp(a->id, b->id, a->id_len) == 0;
}

static void describe(const char *what, const ev_rec *e)
{
    fprintf(stderr, "  %s: type[%zu]=\"%.*s\" data[%zu]=\"%.*s\" id[%zu]=\"%.*s\"\n", what,
            e->type_len, (int)(e->type_len > 80 ? 80 : e->type_len), e->type, e->data_len,
            (int)(e->data_len > 200 ? 200 : e->data_len), e->data, e->id_len,
            (int)(e->id_len > 80 ? 80 : e->id_len), e->id);
}

static void compare(const char *name_a, const outcome *a, const char *name_b, const outcome *b,
                    size_t prefix_only)
{
    size_t n = prefix_only ? prefix_only : a->evs.n;
    if (!prefix_only && a->evs.n != b->evs.n) {
        size_t k = a->evs.n < b->evs.n ? a->evs.n : b->evs.n;
        for (size_t i = 0; i < k; i++)
            if (!same_event(&a->evs.v[i], &b->evs.v[i]))
                k = i;
        if (k < a->evs.n)
            describe(name_a, &a->evs.v[k]);
        if (k < b->evs.n)
            describe(name_b, &b->evs.v[k]);
        FUZZ_CHECK(0, "%s dispatched %zu events, %s %zu (first difference at #%zu)", name_a,
                   a->evs.n, name_b, b->evs.n, k);
    }
    FUZZ_CHECK(n <= a->evs.n && n <= b->evs.n, "prefix %zu longer than %zu/%zu", n, a->evs.n,
               b->evs.n);
    for (size_t i = 0; i < n; i++) {
        if (!same_event(&a->evs.v[i], &b->evs.v[i])) {
            describe(name_a, &a->evs.v[i]);
            describe(name_b, &b->evs.v[i]);
            FUZZ_CHECK(0, "event #%zu differs between %s and %s", i, name_a, name_b);
        }
    }
    if (prefix_only)
        return;
    FUZZ_CHECK(a->events == b->events, "events counter %s=%llu %s=%llu", name_a,
               (unsigned long long)a->events, name_b, (unsigned long long)b->events);
    FUZZ_CHECK(a->comments == b->comments, "comments counter %s=%llu %s=%llu", name_a,
               (unsigned long long)a->comments, name_b, (unsigned long long)b->comments);
    FUZZ_CHECK(a->oversized == b->oversized, "oversized counter %s=%llu %s=%llu", name_a,
               (unsigned long long)a->oversized, name_b, (unsigned long long)b->oversized);
    FUZZ_CHECK(a->retry_ms == b->retry_ms, "retry %s=%ld %s=%ld", name_a, a->retry_ms, name_b,
               b->retry_ms);
    FUZZ_CHECK(a->last_id_len == b->last_id_len &&
                   memcmp(a->last_id, b->last_id, a->last_id_len) == 0,
               "last event id %s=\"%s\" %s=\"%s\"", name_a, a->last_id, name_b, b->last_id);
}

/* ---- the reference model ------------------------------------------------ */

typedef struct model {
    size_t max_line, max_event;
    char *data;
    size_t data_len;            /* bytes kept, each data line followed by '\n' */
    char type[SSE_MAX_TYPE + 1];
    size_t type_len;
    char pending[SSE_MAX_ID + 1];
    size_t pending_len;
    bool id_set, broken;
    outcome *out;
} model;

static void model_clear(model *m)
{
    m->data_len = 0;
    m->type_len = 0;
    m->id_set = false;
    m->broken = false;
}

static void model_discard(model *m)
{
    model_clear(m);
    m->broken = true;
    m->out->oversized++;
}

static void model_line(model *m, const char *s, size_t n)
{
    if (n > m->max_line) {          /* a line over the cap drops its event */
        model_discard(m);
        return;
    }
    if (n == 0) {                   /* blank line: dispatch */
        if (m->broken) {
            model_clear(m);
            return;
        }
        if (m->id_set) {
            memcpy(m->out->last_id, m->pending, m->pending_len + 1);
            m->out->last_id_len = m->pending_len;
        }
        if (m->data_len > 0) {
            m->out->events++;
            const char *type = m->type_len ? m->type : "message";
            size_t tl = m->type_len ? m->type_len : 7;
            push(&m->out->evs, type, tl, m->data, m->data_len - 1, m->out->last_id,
                 m->out->last_id_len);
        }
        model_clear(m);
        return;
    }
    if (s[0] == ':') {
        m->out->comments++;
        return;
    }
    if (m->broken)
        return;
    size_t name = 0;
    while (name < n && s[name] != ':')
        name++;
    const char *v = s + name;
    size_t vn = n - name;
    if (vn > 0) {                   /* skip the colon, then one space */
        v++;
        vn--;
        if (vn > 0 && v[0] == ' ') {
            v++;
            vn--;
        }
    }
    if (name == 4 && memcmp(s, "data", 4) == 0) {
        if (m->data_len + vn > m->max_event) {
            model_discard(m);
            return;
        }
        m->data = realloc(m->data, m->data_len + vn + 1);
        if (!m->data)
            abort();
        memcpy(m->data + m->data_len, v, vn);
        m->data_len += vn;
        m->data[m->data_len++] = '\n';
    } else if (name == 5 && memcmp(s, "event", 5) == 0) {
        m->type_len = utf8_truncate(v, vn, SSE_MAX_TYPE);
        memcpy(m->type, v, m->type_len);
    } else if (name == 2 && memcmp(s, "id", 2) == 0) {
        if (vn <= SSE_MAX_ID && !memchr(v, '\0', vn)) {
            memcpy(m->pending, v, vn);
            m->pending[vn] = '\0';
            m->pending_len = vn;
            m->id_set = true;
        }
    } else if (name == 5 && memcmp(s, "retry", 5) == 0 && vn > 0) {
        long ms = 0;
        for (size_t i = 0; i < vn; i++) {
            if (v[i] < '0' || v[i] > '9')
                return;
        }
        for (size_t i = 0; i < vn; i++) {
            if (__builtin_mul_overflow(ms, 10L, &ms) ||
                __builtin_add_overflow(ms, (long)(v[i] - '0'), &ms)) {
                ms = LONG_MAX;
                break;
            }
        }
        m->out->retry_ms = ms;
    }
}

/* One connection: strip one BOM, split at CRLF / LF / CR, drop the
 * unterminated tail together with the event being built. */
static void model_connection(model *m, const char *s, size_t n)
{
    size_t i = 0;
    if (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    size_t start = i;
    while (i < n) {
        if (s[i] == '\r' || s[i] == '\n') {
            model_line(m, s + start, i - start);
            if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
                i++;
            start = i + 1;
        }
        i++;
    }
    /* The parser knows an unterminated line is over the cap before it ends
     * (and counts it), unless it is still only part of a possible BOM. */
    bool bom_prefix = start == 0 && n < 3 && memcmp(s, "\xEF\xBB\xBF", n) == 0;
    if (n - start > m->max_line && !bom_prefix)
        model_discard(m);
    model_clear(m);
}

/* ---- the parser under test ---------------------------------------------- */

typedef struct harness {
    outcome *out;
    size_t max_event;           /* effective cap */
    size_t stop_after;          /* 0 = never stop */
    size_t seen;
    bool stopped;
} harness;

static int on_event(void *ud, const sse_event *ev)
{
    harness *h = ud;
    FUZZ_CHECK(ev && ev->type && ev->data && ev->id, "NULL member in a dispatched event");
    FUZZ_CHECK(ev->type_len >= 1 && ev->type_len <= SSE_MAX_TYPE, "type_len %zu", ev->type_len);
    FUZZ_CHECK(ev->type[ev->type_len] == '\0', "type not NUL-terminated at its length");
    FUZZ_CHECK(!memchr(ev->type, '\r', ev->type_len) && !memchr(ev->type, '\n', ev->type_len),
               "line break inside the event type");
    FUZZ_CHECK(ev->data_len <= h->max_event, "data_len %zu over max_event %zu", ev->data_len,
               h->max_event);
    FUZZ_CHECK(ev->data[ev->data_len] == '\0', "data not NUL-terminated at its length");
    FUZZ_CHECK(!memchr(ev->data, '\r', ev->data_len), "CR inside event data");
    FUZZ_CHECK(ev->id_len <= SSE_MAX_ID, "id_len %zu", ev->id_len);
    FUZZ_CHECK(ev->id[ev->id_len] == '\0', "id not NUL-terminated at its length");
    FUZZ_CHECK(!memchr(ev->id, '\0', ev->id_len), "NUL inside the event id");
    FUZZ_CHECK(!memchr(ev->id, '\r', ev->id_len) && !memchr(ev->id, '\n', ev->id_len),
               "line break inside the event id");
    if (h->out)
        push(&h->out->evs, ev->type, ev->type_len, ev->data, ev->data_len, ev->id, ev->id_len);
    h->seen++;
    if (h->stop_after && h->seen == h->stop_after) {
        h->stopped = true;
        return 1;
    }
    return 0;
}

static void snapshot(const sse_parser *p, outcome *o)
{
    o->events = p->events;
    o->comments = p->comments;
    o->oversized = p->oversized;
    o->retry_ms = p->retry_ms;
    const char *id = sse_last_id(p);
    FUZZ_CHECK(id != NULL, "sse_last_id returned NULL");
    size_t n = strlen(id);
    FUZZ_CHECK(n <= SSE_MAX_ID, "last id length %zu", n);
    memcpy(o->last_id, id, n + 1);
    o->last_id_len = n;
}

/* Feeds s[0..n) in pieces chosen by mode/size/rng. Returns the number of
 * bytes fed before the callback stopped the parser (n when it never did). */
static size_t feed_pieces(sse_parser *p, harness *h, const char *s, size_t n, int mode,
                          size_t size, fuzz_rng *rng)
{
    size_t off = 0;
    while (off < n) {
        size_t k;
        switch (mode) {
        case 0: k = n - off; break;                              /* one feed */
        case 1: k = size; break;                                 /* fixed pieces */
        case 2: k = 1; break;                                    /* byte by byte */
        default: k = fz_below(rng, 2 * size + 2); break;         /* random, with empty feeds */
        }
        if (k > n - off)
            k = n - off;
        /* Exact-size copy: a read past the piece is an ASan report. */
        char *piece = fz_dup(s + off, k, 0);
        int rc = sse_feed(p, piece, k);
        free(piece);
        FUZZ_CHECK(rc == SSE_OK || rc == SSE_ESTOPPED, "sse_feed returned %d", rc);
        FUZZ_CHECK((rc == SSE_ESTOPPED) == h->stopped,
                   "sse_feed returned %d but the callback %s", rc,
                   h->stopped ? "asked to stop" : "did not ask to stop");
        off += k;
        if (rc == SSE_ESTOPPED)
            return off;
    }
    return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    size_t max_line = caps[fz_u8(&in) % NCAPS];
    size_t max_event = caps[fz_u8(&in) % NCAPS];
    int mode = fz_u8(&in) % 4;
    size_t piece = fz_u8(&in) % 64 + 1;
    uint8_t resets_byte = fz_u8(&in);
    uint8_t stop_byte = fz_u8(&in);
    uint32_t seed = (uint32_t)fz_u8(&in) << 8 | fz_u8(&in);
    const char *s = (const char *)in.p;
    size_t n = in.n;
    size_t eff_line = max_line ? max_line : SSE_DEFAULT_MAX_LINE;
    size_t eff_event = max_event ? max_event : SSE_DEFAULT_MAX_EVENT;

    /* Connection boundaries (sse_reset points), the same for every run. */
    fuzz_rng rng;
    fz_rng_seed(&rng, seed * 2654435761u + (uint32_t)n);
    size_t bounds[MAX_RESETS + 2];
    size_t nb = 0;
    bounds[nb++] = 0;
    size_t nresets = resets_byte & 1 ? 0 : (size_t)(resets_byte >> 2) % MAX_RESETS;
    for (size_t i = 0; i < nresets; i++) {
        size_t at = fz_below(&rng, n + 1);
        if (at >= bounds[nb - 1])
            bounds[nb++] = at;
    }
    bounds[nb++] = n;
    bool initial_id = resets_byte & 2;
    static const char INITIAL_ID[] = "resume-from-cursor-42";

    /* 1. the model */
    outcome ref = {.retry_ms = -1};
    model m = {.max_line = eff_line, .max_event = eff_event, .out = &ref};
    if (initial_id) {
        memcpy(ref.last_id, INITIAL_ID, sizeof INITIAL_ID);
        ref.last_id_len = sizeof INITIAL_ID - 1;
    }
    for (size_t c = 0; c + 1 < nb; c++)
        model_connection(&m, s + bounds[c], bounds[c + 1] - bounds[c]);
    free(m.data);

    /* 2. one feed per connection, 3. pieces */
    outcome whole = {0}, split = {0};
    for (int run = 0; run < 2; run++) {
        outcome *o = run == 0 ? &whole : &split;
        harness h = {.out = o, .max_event = eff_event};
        sse_parser p;
        sse_init(&p, max_line, max_event, on_event, &h);
        if (initial_id)
            sse_set_last_id(&p, INITIAL_ID);
        fuzz_rng r2;
        fz_rng_seed(&r2, seed ^ 0x5bd1e995u);
        for (size_t c = 0; c + 1 < nb; c++) {
            if (c > 0)
                sse_reset(&p);
            feed_pieces(&p, &h, s + bounds[c], bounds[c + 1] - bounds[c], run == 0 ? 0 : mode,
                        piece, &r2);
        }
        snapshot(&p, o);
        sse_free(&p);
    }
    compare("model", &ref, "one-feed", &whole, 0);
    compare("one-feed", &whole, "pieces", &split, 0);

    /* 4. stop after k events, then reset and carry on (invariants only) */
    if (whole.evs.n > 0 && stop_byte % 2) {
        size_t k = (size_t)(stop_byte / 2) % whole.evs.n + 1;
        outcome stopped = {0};
        harness h = {.out = &stopped, .max_event = eff_event, .stop_after = k};
        sse_parser p;
        sse_init(&p, max_line, max_event, on_event, &h);
        if (initial_id)
            sse_set_last_id(&p, INITIAL_ID);
        fuzz_rng r3;
        fz_rng_seed(&r3, seed ^ 0x27d4eb2fu);
        for (size_t c = 0; c + 1 < nb; c++) {
            if (c > 0)
                sse_reset(&p);
            size_t len = bounds[c + 1] - bounds[c];
            size_t done = feed_pieces(&p, &h, s + bounds[c], len, mode, piece, &r3);
            if (h.stopped) {
                FUZZ_CHECK(h.seen == k, "callback ran %zu times after asking to stop at %zu",
                           h.seen, k);
                compare("one-feed", &whole, "stopped", &stopped, k);
                /* A caller reconnects after a stop: the rest must parse sanely. */
                h.stopped = false;
                h.stop_after = 0;
                h.out = NULL;
                sse_reset(&p);
                feed_pieces(&p, &h, s + bounds[c] + done, len - done, mode, piece, &r3);
            }
        }
        FUZZ_CHECK(stopped.evs.n >= k, "stop at %zu never happened (%zu events)", k,
                   stopped.evs.n);
        sse_free(&p);
        list_free(&stopped.evs);
    }

    list_free(&ref.evs);
    list_free(&whole.evs);
    list_free(&split.evs);
    return 0;
}
