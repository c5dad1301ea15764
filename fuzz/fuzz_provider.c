/* fuzz_provider.c — every registered platform adapter's event parser
 * (struct provider's stream_parse), called the way providers/stream.c calls
 * it, with arbitrary SSE events.
 *
 * The target is generic over prov_all[]: an adapter added to
 * providers/registry.c is fuzzed as soon as `minimal` below has a target
 * object for it (adapters without one are skipped, with a notice at start).
 *
 * Input:
 *   [0] which adapter: an index into prov_all (modulo its length), or '@'
 *       followed by the adapter's name and '\n' (what the committed seeds and
 *       regression inputs use, so they keep their meaning when the registry
 *       changes order)
 *   [1] flags: bit0 log stream (else events; only if the adapter tails logs)
 *              bit1 raw records instead of an SSE stream (see below)
 *              bit2 restore the stream state from a saved string first
 *              bit3 follow a change set ("changeset:..." id) rather than "dep_..."
 *   [2] if bit2: length L of the saved string, then L bytes
 *   rest: an SSE stream (parsed by providers/sse), or raw records separated
 *         by 0x1E, each "type 0x1F data" (no 0x1F: type "message").
 *
 * Per input, as a stream's life: configure the target, stream_spec,
 * stream_state_new, (restore), stream_prepare, stream_parse per event until
 * it returns END or an error, save → restore round trip, free, unconfigure.
 *
 * Invariants: stream_parse returns -1 (with err->code set), CONTINUE, END or
 * IGNORED; every emitted event has a valid kind and status, and every string
 * in it (status words, URL, step, message, log lines, error code/message) is
 * NUL-terminated valid UTF-8 — it all goes into JSON, and jansson drops
 * invalid UTF-8 silently; a log line's text is exactly `len` valid bytes;
 * a state saved by stream_state_save restores without error into a fresh
 * state and says the same about completeness.
 *
 * Showly's parser has a fast path (a scanner for the shapes Showly sends)
 * in front of its jansson path (providers/showly.h): every Showly event is
 * also parsed by each path alone, and unless the fast one declines, both
 * must return the same code and emit the same event, byte for byte. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "fuzz/fuzz.h"
#include "mcp/config.h"
#include "mcp/log.h"
#include "providers/http.h"
#include "providers/provider.h"
#include "providers/showly.h"
#include "providers/sse.h"
#include "providers/utf8.h"

/* A minimal valid target per adapter (what its configure requires). Add a
 * line when a new adapter lands in providers/registry.c. */
static const struct {
    const char *provider;
    const char *target;
} minimal[] = {
    {"showly", "{\"provider\":\"showly\",\"siteId\":\"site_01HZX\","
               "\"baseUrl\":\"http://127.0.0.1:9\"}"},
    {"bigcommerce", "{\"provider\":\"bigcommerce\",\"storeHash\":\"abc123\","
                    "\"projectUuid\":\"6f1c8a52-0d3e-4f7a-9b1e-2c4d5e6f7a8b\","
                    "\"productionProjectUuid\":\"0e6c2b3a-1d4f-4a5b-8c9d-7e6f5a4b3c2d\","
                    "\"baseUrl\":\"http://127.0.0.1:9\"}"},
    {"mixpeek", "{\"provider\":\"mixpeek\",\"appId\":\"app_abc123\",\"namespace\":\"ns-fuzz\","
                "\"baseUrl\":\"http://127.0.0.1:9\"}"},
    {"bluelink", "{\"provider\":\"bluelink\",\"baseUrl\":\"http://127.0.0.1:9\","
                 "\"instanceName\":\"prod-stack\",\"directory\":\"infra\","
                 "\"blueprintFile\":\"project.blueprint.yml\","
                 "\"auth\":{\"type\":\"apiKey\",\"keyEnv\":\"BLUELINK_API_KEY\"}}"},
};

#define MAX_PROVIDERS 64

static uv_loop_t loop;
static http_client *http;
static size_t nprov;
static cfg *configs[MAX_PROVIDERS];     /* NULL: adapter not fuzzed */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    setenv("SHOWLY_TOKEN", "sk_live_fuzz", 1);
    setenv("BIGCOMMERCE_ACCESS_TOKEN", "bc-fuzz-token", 1);
    setenv("MIXPEEK_API_KEY", "mx-fuzz-key", 1);
    setenv("BLUELINK_API_KEY", "bl-fuzz-key", 1);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || uv_loop_init(&loop) != 0 ||
        !(http = http_client_new(&loop)))
        abort();
    for (nprov = 0; prov_all[nprov] && nprov < MAX_PROVIDERS; nprov++) {
        const struct provider *ops = prov_all[nprov];
        const char *obj = NULL;
        for (size_t k = 0; k < sizeof minimal / sizeof minimal[0]; k++)
            if (strcmp(minimal[k].provider, ops->name) == 0)
                obj = minimal[k].target;
        if (!obj) {
            fprintf(stderr, "fuzz_provider: adapter \"%s\" has no minimal target in "
                            "fuzz/fuzz_provider.c; it is not fuzzed\n", ops->name);
            continue;
        }
        char text[2048], err[1024];
        snprintf(text, sizeof text, "{\"targets\":{\"fuzz\":%s}}", obj);
        FUZZ_CHECK(cfg_parse(text, strlen(text), "fuzz_provider.c", prov_known, &configs[nprov],
                             err, sizeof err) == 0,
                   "the minimal %s target no longer loads; update `minimal`: %s", ops->name, err);
        prov_target t = {.cfg = &configs[nprov]->targets[0], .ops = ops, .http = http,
                         .loop = &loop};
        int rc = ops->configure(&t, err, sizeof err);
        if (ops->unconfigure)
            ops->unconfigure(&t);
        FUZZ_CHECK(rc == 0, "the minimal %s target no longer configures; update `minimal`: %s",
                   ops->name, err);
    }
    return 0;
}

/* ---- checks on what the adapter emits ----------------------------------- */

static void check_str(const char *what, const char *s)
{
    if (!s)
        return;
    size_t n = strlen(s);
    FUZZ_CHECK(utf8_valid(s, n), "%s is not valid UTF-8 (%zu bytes): \"%.200s\"", what, n, s);
}

static void check_error(const char *what, const prov_error *e)
{
    FUZZ_CHECK(memchr(e->code, '\0', sizeof e->code), "%s: code not NUL-terminated", what);
    FUZZ_CHECK(memchr(e->message, '\0', sizeof e->message), "%s: message not NUL-terminated",
               what);
    check_str("prov_error.code", e->code);
    check_str("prov_error.message", e->message);
}

typedef struct sink {
    const struct provider *ops;
    unsigned long emitted;
} sink;

static void on_emit(void *ud, const prov_event *ev)
{
    sink *k = ud;
    FUZZ_CHECK(ev, "%s emitted NULL", k->ops->name);
    FUZZ_CHECK(ev->kind >= PROV_EV_STATUS && ev->kind <= PROV_EV_ERROR, "%s: event kind %d",
               k->ops->name, (int)ev->kind);
    FUZZ_CHECK(ev->status >= PROV_ST_UNKNOWN && ev->status <= PROV_ST_CANCELED,
               "%s: status %d", k->ops->name, (int)ev->status);
    check_str("provider_status", ev->provider_status);
    check_str("url", ev->url);
    check_str("step", ev->step);
    check_str("message", ev->message);
    FUZZ_CHECK(ev->nlines == 0 || ev->lines, "%s: %zu lines but no array", k->ops->name,
               ev->nlines);
    for (size_t i = 0; i < ev->nlines; i++) {
        const prov_log_line *l = &ev->lines[i];
        FUZZ_CHECK(l->text, "%s: log line %zu has no text", k->ops->name, i);
        FUZZ_CHECK(utf8_valid(l->text, l->len), "%s: log line %zu is not valid UTF-8",
                   k->ops->name, i);
        check_str("log line level", l->level);
        check_str("log line ts", l->ts);
        check_str("log line source", l->source);
    }
    if (ev->error)
        check_error("prov_event.error", ev->error);
    if (ev->detail) {
        char *d = json_dumps(ev->detail, JSON_COMPACT | JSON_ENCODE_ANY);
        FUZZ_CHECK(d, "%s: detail does not serialize", k->ops->name);
        free(d);
    }
    k->emitted++;
}

/* ---- Showly: fast path against jansson path ------------------------------ */

typedef struct capbuf {
    char *p;
    size_t len, cap;
} capbuf;

static void cap_put(capbuf *b, const void *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* A string (or its absence) as length + bytes: NULs and all compare. */
static void cap_bytes(capbuf *b, const char *s, size_t n)
{
    size_t tag = s ? n : (size_t)-1;
    cap_put(b, &tag, sizeof tag);
    if (s)
        cap_put(b, s, n);
}

static void cap_str(capbuf *b, const char *s) { cap_bytes(b, s, s ? strlen(s) : 0); }

static void on_capture(void *ud, const prov_event *ev)
{
    capbuf *b = ud;
    int head[3] = {(int)ev->kind, (int)ev->status, ev->detail != NULL};
    double nums[2] = {ev->progress, ev->total};
    cap_put(b, head, sizeof head);
    cap_put(b, nums, sizeof nums);
    cap_str(b, ev->provider_status);
    cap_str(b, ev->url);
    cap_str(b, ev->step);
    cap_str(b, ev->message);
    cap_put(b, &ev->nlines, sizeof ev->nlines);
    for (size_t i = 0; i < ev->nlines; i++) {
        cap_bytes(b, ev->lines[i].text, ev->lines[i].len);
        cap_str(b, ev->lines[i].level);
        cap_str(b, ev->lines[i].ts);
        cap_str(b, ev->lines[i].source);
    }
    if (ev->error) {
        long status = ev->error->http_status;
        int retry = ev->error->retryable;
        cap_put(b, &status, sizeof status);
        cap_put(b, &retry, sizeof retry);
        cap_str(b, ev->error->code);
        cap_str(b, ev->error->message);
    }
}

static void compare_showly_paths(const sse_event *ev)
{
    capbuf fast = {0}, slow = {0};
    int rf = showly_event_parse_fast(ev, on_capture, &fast);
    if (rf == SHOWLY_FAST_DECLINED) {
        FUZZ_CHECK(fast.len == 0, "showly fast path emitted before declining");
    } else {
        int rs = showly_event_parse_slow(ev, on_capture, &slow);
        FUZZ_CHECK(rf == rs, "showly fast path returned %d, slow path %d, for data \"%.*s\"",
                   rf, rs, (int)(ev->data_len > 300 ? 300 : ev->data_len), ev->data);
        FUZZ_CHECK(fast.len == slow.len && (fast.len == 0 || memcmp(fast.p, slow.p, fast.len) == 0),
                   "showly fast and slow paths emitted different events for a %s event, data "
                   "\"%.*s\"", ev->type, (int)(ev->data_len > 300 ? 300 : ev->data_len),
                   ev->data);
    }
    free(fast.p);
    free(slow.p);
}

/* ---- one stream ----------------------------------------------------------- */

typedef struct stream {
    prov_target *t;
    void *state;
    enum prov_stream_kind kind;
    sink sink;
    bool over;               /* END or a fatal error: the stream is done */
} stream;

static void parse_one(stream *s, const sse_event *ev)
{
    if (strcmp(s->t->ops->name, "showly") == 0)
        compare_showly_paths(ev);
    prov_error err;
    memset(&err, 0, sizeof err);
    int r = s->t->ops->stream_parse(s->t, s->state, s->kind, ev, on_emit, &s->sink, &err);
    FUZZ_CHECK(r == -1 || r == PROV_PARSE_CONTINUE || r == PROV_PARSE_END ||
                   r == PROV_PARSE_IGNORED,
               "%s stream_parse returned %d", s->t->ops->name, r);
    if (r == -1) {
        FUZZ_CHECK(err.code[0], "%s stream_parse failed without an error code", s->t->ops->name);
        check_error("stream_parse error", &err);
    }
    if (r == -1 || r == PROV_PARSE_END)
        s->over = true;
}

static int on_sse(void *ud, const sse_event *ev)
{
    stream *s = ud;
    parse_one(s, ev);
    return s->over ? 1 : 0;
}

static void feed_raw(stream *s, const char *p, size_t n)
{
    while (n > 0 && !s->over) {
        const char *end = memchr(p, 0x1E, n);
        size_t rec = end ? (size_t)(end - p) : n;
        const char *sep = memchr(p, 0x1F, rec);
        size_t tl = sep ? (size_t)(sep - p) : 0;
        const char *d = sep ? sep + 1 : p;
        size_t dl = sep ? rec - tl - 1 : rec;
        if (tl > SSE_MAX_TYPE)
            tl = SSE_MAX_TYPE;
        char *type = tl ? fz_dup(p, tl, 1) : fz_dup("message", 7, 1);
        char *data = fz_dup(d, dl, 1);
        sse_event ev = {.type = type, .type_len = tl ? tl : 7, .data = data, .data_len = dl,
                        .id = "", .id_len = 0};
        parse_one(s, &ev);
        free(type);
        free(data);
        p += rec + (end ? 1 : 0);
        n -= rec + (end ? 1 : 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    if (nprov == 0)
        return 0;
    size_t which = nprov;
    if (size > 0 && data[0] == '@') {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t len = nl ? (size_t)(nl - data) - 1 : 0;
        for (size_t i = 0; nl && i < nprov; i++)
            if (strlen(prov_all[i]->name) == len && memcmp(prov_all[i]->name, data + 1, len) == 0)
                which = i;
        if (which == nprov)
            return 0;
        in.p = nl + 1;
        in.n = size - (size_t)(in.p - data);
    } else {
        which = fz_u8(&in) % nprov;
    }
    uint8_t flags = fz_u8(&in);
    const struct provider *ops = prov_all[which];
    if (!configs[which])
        return 0;
    char *saved = NULL;
    if (flags & 4) {
        size_t len = fz_u8(&in);
        if (len > in.n)
            len = in.n;
        /* It comes from a JSON string in the cursor: valid UTF-8. */
        saved = utf8_repair((const char *)in.p, len, NULL);
        if (!saved)
            abort();
        in.p += len;
        in.n -= len;
    }

    prov_target t = {.cfg = &configs[which]->targets[0], .ops = ops, .http = http, .loop = &loop};
    char err[1024];
    FUZZ_CHECK(ops->configure(&t, err, sizeof err) == 0, "%s configure: %s", ops->name, err);

    stream s = {.t = &t, .kind = PROV_STREAM_EVENTS, .sink = {.ops = ops}};
    if ((flags & 1) && (ops->caps & PROV_CAP_TAIL_LOGS))
        s.kind = PROV_STREAM_LOGS;
    const char *id = flags & 8 ? "changeset:cs_fuzz01" : "dep_fuzz01";
    if (s.kind == PROV_STREAM_LOGS && !ops->logs_need_deployment)
        id = NULL;

    prov_stream_spec spec;
    prov_error perr;
    memset(&perr, 0, sizeof perr);
    bool open = ops->stream_spec && ops->stream_parse &&
                ops->stream_spec(&t, s.kind, id, &spec, &perr) == 0;
    if (open && ops->stream_state_new)
        s.state = ops->stream_state_new(&t, s.kind);
    if (open && saved)
        open = s.state && ops->stream_state_restore &&
               ops->stream_state_restore(s.state, saved) == 0;
    if (open) {
        if (ops->stream_prepare)
            ops->stream_prepare(&t, s.state, id, &spec);
        const char *rest = (const char *)in.p;
        if (flags & 2) {
            feed_raw(&s, rest, in.n);
        } else {
            sse_parser p;
            sse_init(&p, 0, 0, on_sse, &s);
            char *buf = fz_dup(rest, in.n, 0);
            int rc = sse_feed(&p, buf, in.n);
            FUZZ_CHECK(rc == SSE_OK || rc == SSE_ESTOPPED, "sse_feed: %d", rc);
            free(buf);
            sse_free(&p);
        }
    }

    /* What a cursor carries must come back (a stream that never opened
     * issues no cursor). */
    if (open && s.state && ops->stream_state_save) {
        char *st = ops->stream_state_save(s.state);
        if (st) {
            check_str("saved stream state (goes into the cursor's JSON)", st);
            void *fresh = ops->stream_state_new(&t, s.kind);
            FUZZ_CHECK(fresh, "%s stream_state_new returned NULL", ops->name);
            FUZZ_CHECK(ops->stream_state_restore, "%s saves state but cannot restore it",
                       ops->name);
            FUZZ_CHECK(ops->stream_state_restore(fresh, st) == 0,
                       "%s cannot restore its own saved state \"%.200s\"", ops->name, st);
            if (ops->stream_state_complete)
                FUZZ_CHECK(ops->stream_state_complete(fresh) ==
                               ops->stream_state_complete(s.state),
                           "%s: restored state disagrees about completeness", ops->name);
            if (ops->stream_state_free)
                ops->stream_state_free(fresh);
            free(st);
        }
    }
    if (s.state && ops->stream_state_free)
        ops->stream_state_free(s.state);
    if (ops->unconfigure)
        ops->unconfigure(&t);
    free(saved);
    return 0;
}
