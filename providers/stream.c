/* stream.c — one logical upstream event stream over any number of SSE
 * connections.
 *
 * Platforms close their streams early (BigCommerce after 30 s), replay
 * history on reconnect (Mixpeek), or resume with Last-Event-ID (Bluelink,
 * Showly when it sends ids). This file hides that: it reconnects until the
 * adapter says the logical stream is complete, resumes with the platform's
 * mechanism, drops replayed events by position, and hands the caller one
 * continuous, de-duplicated sequence of common events.
 *
 * Position bookkeeping: `consumed` counts the SSE events of the logical
 * stream that were processed (relayed or not), from its very beginning. A
 * server that replays from the start is skipped forward by that count. The
 * cursor records consumed, the last and first event ids and the latest
 * status, so a later call resumes exactly where this one stopped.
 *
 * Memory: a live stream keeps only what must outlive a connection. What the
 * adapter says to connect to (prov_stream_spec: URL, headers, ~11 KiB) is
 * built on the stack for each connection — stream_spec, then stream_prepare —
 * and wiped once the transfer has copied it; the first event id and a fatal
 * in-stream error are allocated only when there is one. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/log.h"
#include "providers/b64.h"
#include "providers/hmac.h"
#include "providers/provider.h"
#include "providers/utf8.h"

#define STREAM_CONNECT_TIMEOUT_MS 10000
#define STREAM_IDLE_TIMEOUT_MS    90000   /* no byte (not even a keep-alive) */
#define STREAM_BACKOFF_MIN_MS     250
#define STREAM_BACKOFF_MAX_MS     5000
#define STREAM_CURSOR_VERSION     1
#define STREAM_PROVIDER_STATUS_MAX 64

struct prov_stream {
    prov_target *t;
    enum prov_stream_kind kind;
    char *id;
    prov_stream_callbacks cb;
    void *ud;
    enum prov_resume resume;   /* from the adapter's spec */
    bool reconnect;            /* from the adapter's spec */
    void *astate;
    sse_parser sse;
    http_req *req;
    uv_timer_t *retry;

    unsigned long consumed;    /* SSE events processed in the logical stream */
    unsigned long delivered;   /* common events handed to on_event by this stream */
    unsigned long skip;        /* events still to drop on this connection */
    unsigned long conn_events; /* SSE events seen on this connection */
    unsigned long consumed_at_connect; /* to tell a connection that made progress */
    char *first_id;            /* id of the logical stream's first event; NULL = none */
    uint64_t oversized_seen;

    prov_status status;
    char provider_status[STREAM_PROVIDER_STATUS_MAX];
    char *url;

    unsigned reconnects;
    unsigned failures;         /* consecutive connects that delivered nothing */
    bool in_dispatch;          /* inside a parser / user callback */
    bool dead;                 /* closed or ended while in_dispatch */
    bool ended;
    bool paused;
    bool complete_at_open;     /* the cursor says the logical stream had ended */
    bool have_fatal;           /* the adapter reported a fatal in-stream error */
    prov_error *fatal;         /* that error (NULL if it could not be kept) */
    long http_status;          /* of the current connection */
    char *errbody;             /* body of a non-2xx answer (capped) */
    size_t errbody_len;
};

#define STREAM_ERROR_BODY_MAX (64u << 10)

static int connect_now(prov_stream *s, prov_error *err);

static void on_retry_closed(uv_handle_t *h) { free(h); }

static void stream_free(prov_stream *s)
{
    if (s->req)
        http_cancel(s->req);
    if (s->retry)
        uv_close((uv_handle_t *)s->retry, on_retry_closed);
    if (s->astate && s->t->ops->stream_state_free)
        s->t->ops->stream_state_free(s->astate);
    sse_free(&s->sse);
    free(s->errbody);
    free(s->id);
    free(s->url);
    free(s->first_id);
    free(s->fatal);
    free(s);
}

/* Ends the logical stream: on_end once, then the stream is gone. */
static void stream_end(prov_stream *s, const prov_error *err)
{
    if (s->ended)
        return;
    s->ended = true;
    if (s->req) {
        http_cancel(s->req);
        s->req = NULL;
    }
    s->cb.on_end(s->ud, err);
    if (s->in_dispatch)
        s->dead = true;
    else
        stream_free(s);
}

/* ---- events ------------------------------------------------------------- */

static void emit(void *sink, const prov_event *ev)
{
    prov_stream *s = sink;
    if (s->dead || s->ended)
        return;
    if (ev->kind == PROV_EV_STATUS && ev->status != PROV_ST_UNKNOWN) {
        s->status = ev->status;
        snprintf(s->provider_status, sizeof s->provider_status, "%s",
                 ev->provider_status ? ev->provider_status : prov_status_name(ev->status));
        utf8_trim_cstr(s->provider_status);
    }
    if (ev->url && (!s->url || strcmp(s->url, ev->url) != 0)) {
        free(s->url);
        s->url = strdup(ev->url);
    }
    s->delivered++;
    s->cb.on_event(s->ud, ev);
}

static int on_sse_event(void *ud, const sse_event *ev)
{
    prov_stream *s = ud;
    s->conn_events++;
    /* A server that ignored Last-Event-ID replays from its first event:
     * recognise that and skip what was already consumed. */
    if (s->conn_events == 1 && s->resume == PROV_RESUME_LAST_EVENT_ID && s->consumed > 0 &&
        ev->id_len > 0 && s->first_id && strcmp(ev->id, s->first_id) == 0) {
        log_debug("stream: server replayed from the start; skipping %lu events", s->consumed);
        s->skip = s->consumed - 1; /* this one is the first of them */
        return 0;
    }
    if (s->skip > 0) {
        s->skip--;
        return 0;
    }
    if (s->consumed == 0 && ev->id_len > 0) {
        /* Out of memory only weakens replay detection (skip by count). */
        free(s->first_id);
        s->first_id = strdup(ev->id);
    }
    s->consumed++;
    prov_error err = {0};
    int r = s->t->ops->stream_parse(s->t, s->astate, s->kind, ev, emit, s, &err);
    if (s->dead || s->ended)
        return 1;
    if (r < 0) {
        free(s->fatal);
        s->fatal = malloc(sizeof *s->fatal);
        if (s->fatal)
            *s->fatal = err;
        s->have_fatal = true;
        return 1;
    }
    if (r == PROV_PARSE_END)
        return 1; /* on_data ends the logical stream */
    return 0;
}

static void report_oversized(prov_stream *s)
{
    if (s->sse.oversized == s->oversized_seen)
        return;
    s->oversized_seen = s->sse.oversized;
    log_warn("stream: skipped an upstream line or event over the size cap");
    prov_log_line line = {
        .text = "[deploy-mcp] skipped an oversized upstream line or event (over the size cap)",
        .level = "warn", .source = "deploy-mcp",
    };
    line.len = strlen(line.text);
    prov_event ev = {.kind = PROV_EV_LOG, .status = PROV_ST_UNKNOWN, .progress = -1,
                     .total = -1, .lines = &line, .nlines = 1};
    emit(s, &ev);
}

/* ---- connection --------------------------------------------------------- */

static int on_response(void *ud, const http_response *res)
{
    prov_stream *s = ud;
    s->http_status = res->status;
    s->errbody_len = 0;
    return 0;
}

/* Keeps the (small) body of an error answer so the adapter can read the
 * platform's error code from it. */
static int keep_error_body(prov_stream *s, const char *buf, size_t len)
{
    if (s->errbody_len + len > STREAM_ERROR_BODY_MAX)
        return 1; /* enough to map the error */
    char *nb = realloc(s->errbody, s->errbody_len + len + 1);
    if (!nb)
        return 1;
    s->errbody = nb;
    memcpy(s->errbody + s->errbody_len, buf, len);
    s->errbody_len += len;
    s->errbody[s->errbody_len] = '\0';
    return 0;
}

static int on_data(void *ud, const char *buf, size_t len)
{
    prov_stream *s = ud;
    if (s->http_status < 200 || s->http_status >= 300)
        return keep_error_body(s, buf, len);
    s->in_dispatch = true;
    int rc = sse_feed(&s->sse, buf, len);
    report_oversized(s);
    s->in_dispatch = false;
    if (s->dead) {
        /* ended or closed from inside a callback; the request was cancelled */
        stream_free(s);
        return 1;
    }
    if (rc == SSE_ESTOPPED) {
        if (s->have_fatal) {
            prov_error e;
            if (s->fatal)
                e = *s->fatal;
            else
                prov_error_set(&e, "internal_error", 0, true,
                               "the event stream reported an error (out of memory keeping it)");
            s->have_fatal = false;
            free(s->fatal);
            s->fatal = NULL;
            stream_end(s, &e);
        } else {
            stream_end(s, NULL);
        }
        return 1;
    }
    if (rc == SSE_ENOMEM) {
        prov_error e;
        prov_error_set(&e, "internal_error", 0, true, "out of memory parsing the event stream");
        stream_end(s, &e);
        return 1;
    }
    return 0;
}

static void on_retry_timer(uv_timer_t *timer)
{
    prov_stream *s = timer->data;
    uv_close((uv_handle_t *)timer, on_retry_closed);
    s->retry = NULL;
    if (s->complete_at_open) {
        stream_end(s, NULL);
        return;
    }
    prov_error e;
    if (connect_now(s, &e) != 0)
        stream_end(s, &e);
}

static void schedule_reconnect(prov_stream *s, unsigned delay_ms)
{
    s->retry = malloc(sizeof *s->retry);
    if (!s->retry) {
        prov_error e;
        prov_error_set(&e, "internal_error", 0, true, "out of memory reconnecting");
        stream_end(s, &e);
        return;
    }
    uv_timer_init(s->t->loop, s->retry);
    s->retry->data = s;
    uv_timer_start(s->retry, on_retry_timer, delay_ms, 0);
}

static void on_done(void *ud, const http_response *res)
{
    prov_stream *s = ud;
    s->req = NULL;
    if (res->status >= 400 || (res->status > 0 && res->status < 200)) {
        prov_error e = {0};
        http_response copy = *res;
        copy.body = s->errbody ? s->errbody : "";
        copy.body_len = s->errbody_len;
        if (s->t->ops->map_http_error)
            s->t->ops->map_http_error(s->t, &copy, &e);
        else
            prov_error_set(&e, "http_error", res->status, res->status >= 500,
                           "the event stream answered HTTP %ld", res->status);
        e.http_status = res->status;
        /* 4xx other than 408/429 will not change by retrying. */
        bool transient = res->status >= 500 || res->status == 408 || res->status == 429;
        if (!transient || ++s->failures > PROV_STREAM_MAX_RECONNECTS) {
            stream_end(s, &e);
            return;
        }
    } else if (res->status == 0 && res->lib_missing) {
        /* libcurl is not installed: no reconnect can help */
        prov_error e;
        prov_error_set(&e, "internal_error", 0, false, "%s", res->error);
        stream_end(s, &e);
        return;
    } else if (res->status == 0 && prov_curl_permanent(res->curl_code)) {
        /* DNS failure, untrusted certificate, bad CA file: reconnecting
         * cannot help, and the caller must learn why. */
        prov_error e;
        prov_network_error(&e, s->t, res);
        e.retryable = false;
        stream_end(s, &e);
        return;
    } else if (!s->reconnect) {
        prov_error e;
        if (res->curl_code != 0)
            prov_error_set(&e, "network_error", 0, true,
                           "the event stream broke before the deployment finished: %s",
                           res->error);
        else
            prov_error_set(&e, "stream_closed", 0, true,
                           "the platform closed the event stream before a terminal status");
        stream_end(s, &e);
        return;
    } else if (s->consumed > s->consumed_at_connect) {
        s->failures = 0; /* this connection made progress */
    } else if (++s->failures > PROV_STREAM_MAX_RECONNECTS) {
        /* Connections that deliver nothing new (refused, or a server that
         * replays the same events and drops) count as failures and back off. */
        prov_error e;
        prov_error_set(&e, "network_error", 0, true,
                       "could not keep the event stream open after %u attempts%s%s",
                       s->failures, res->error && *res->error ? ": " : "",
                       res->error ? res->error : "");
        stream_end(s, &e);
        return;
    }
    /* The server closed (or the network broke) before the logical stream was
     * complete: reconnect. After a connection that delivered events, go
     * again at once; otherwise back off exponentially. */
    unsigned delay = 0;
    if (s->failures > 0) {
        delay = STREAM_BACKOFF_MIN_MS << (s->failures > 5 ? 5 : s->failures - 1);
        if (delay > STREAM_BACKOFF_MAX_MS)
            delay = STREAM_BACKOFF_MAX_MS;
    }
    if (s->sse.retry_ms > (long)delay)
        delay = s->sse.retry_ms > STREAM_BACKOFF_MAX_MS ? STREAM_BACKOFF_MAX_MS
                                                         : (unsigned)s->sse.retry_ms;
    s->reconnects++;
    log_debug("stream: upstream closed; reconnecting in %u ms (%lu events so far)", delay,
              s->consumed);
    schedule_reconnect(s, delay);
}

/* The headers (and a signed URL) carry credentials: clear the stack copy
 * once the transfer has its own. */
static void spec_wipe(prov_stream_spec *spec)
{
    int n = spec->nheaders;
    if (n < 0 || n > PROV_STREAM_MAX_HEADERS)
        n = PROV_STREAM_MAX_HEADERS;
    hmac_wipe(spec->headers, (size_t)n * sizeof spec->headers[0]);
    hmac_wipe(spec->url, strnlen(spec->url, sizeof spec->url));
}

/* Starts one connection to what `spec` says (the adapter filled it for this
 * connection; http_start copies what it needs). Returns 0, or -1 when the
 * transfer could not be started (nothing was called). */
static int connect_with(prov_stream *s, prov_stream_spec *spec)
{
    static const http_callbacks cbs = { on_response, on_data, on_done };
    const char *headers[PROV_STREAM_MAX_HEADERS + 3];
    char last_id_hdr[SSE_MAX_ID + 32];
    int n = 0;
    if (s->t->ops->stream_prepare)
        s->t->ops->stream_prepare(s->t, s->astate, s->id, spec);
    s->resume = spec->resume;
    s->reconnect = spec->reconnect;
    for (int i = 0; i < spec->nheaders && i < PROV_STREAM_MAX_HEADERS; i++)
        headers[n++] = spec->headers[i];
    headers[n++] = "Accept: text/event-stream";
    headers[n++] = "Cache-Control: no-cache";
    const char *last = sse_last_id(&s->sse);
    if (s->resume == PROV_RESUME_LAST_EVENT_ID && last[0]) {
        snprintf(last_id_hdr, sizeof last_id_hdr, "Last-Event-ID: %s", last);
        headers[n++] = last_id_hdr;
    }
    headers[n] = NULL;
    /* Without a usable Last-Event-ID the server starts over: skip by count. */
    bool by_id = s->resume == PROV_RESUME_LAST_EVENT_ID && last[0];
    s->skip = (s->resume == PROV_RESUME_LIVE || by_id) ? 0 : s->consumed;
    s->conn_events = 0;
    s->consumed_at_connect = s->consumed;
    sse_reset(&s->sse);
    http_opts o = {
        .method = "GET", .url = spec->url, .headers = headers, .stream = true,
        .connect_timeout_ms = STREAM_CONNECT_TIMEOUT_MS, .idle_timeout_ms = STREAM_IDLE_TIMEOUT_MS,
        .ca_file = spec->ca_file,
    };
    s->http_status = 0;
    s->req = http_start(s->t->http, &o, &cbs, s);
    if (!s->req)
        return -1;
    if (s->paused)
        http_pause(s->req, true);
    return 0;
}

/* A reconnect: asks the adapter again (a fresh URL and headers). Returns 0,
 * or -1 with *err set. */
static int connect_now(prov_stream *s, prov_error *err)
{
    prov_stream_spec spec; /* ~11 KiB, on the stack for this connection only */
    prov_stream_spec_init(&spec);
    memset(err, 0, sizeof *err);
    if (s->t->ops->stream_spec(s->t, s->kind, s->id, &spec, err) != 0) {
        spec_wipe(&spec);
        if (!err->code[0])
            prov_error_set(err, "internal_error", 0, true, "could not reconnect the event stream");
        return -1;
    }
    int rc = connect_with(s, &spec);
    spec_wipe(&spec);
    if (rc != 0)
        prov_error_set(err, "internal_error", 0, true, "could not start the stream transfer");
    return rc;
}

/* ---- cursor ------------------------------------------------------------- */

char *prov_stream_cursor(const prov_stream *s)
{
    json_t *c = json_pack("{s:i, s:s, s:I, s:s, s:s}", "v", STREAM_CURSOR_VERSION,
                          "d", s->id ? s->id : "", "n", (json_int_t)s->consumed,
                          "i", sse_last_id(&s->sse), "f", s->first_id ? s->first_id : "");
    if (!c)
        return NULL;
    if (s->status != PROV_ST_UNKNOWN) {
        json_object_set_new(c, "s", json_string(prov_status_name(s->status)));
        json_object_set_new(c, "p", json_string(s->provider_status));
    }
    if (s->url)
        json_object_set_new(c, "u", json_string(s->url));
    if (s->astate && s->t->ops->stream_state_save) {
        char *saved = s->t->ops->stream_state_save(s->astate);
        if (saved)
            json_object_set_new(c, "a", json_string(saved));
        free(saved);
    }
    char *text = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    if (!text)
        return NULL;
    char *out = b64url_encode((const unsigned char *)text, strlen(text));
    free(text);
    return out;
}

static int apply_cursor(prov_stream *s, const char *cursor, prov_error *err)
{
    size_t len = 0;
    unsigned char *raw = b64url_decode(cursor, &len);
    json_t *c = raw ? json_loadb((const char *)raw, len, 0, NULL) : NULL;
    free(raw);
    json_int_t v = 0, n = -1;
    const char *d = NULL, *i = NULL, *f = NULL, *st = NULL, *p = NULL, *u = NULL;
    if (!c || json_unpack(c, "{s:I, s:s, s:I, s:s, s:s, s?s, s?s, s?s}", "v", &v, "d", &d,
                          "n", &n, "i", &i, "f", &f, "s", &st, "p", &p, "u", &u) != 0 ||
        v != STREAM_CURSOR_VERSION || n < 0 || strlen(i) > SSE_MAX_ID ||
        strlen(f) > SSE_MAX_ID) {
        json_decref(c);
        prov_error_set(err, "invalid_cursor", 0, false,
                       "the cursor is not one this server issued: pass the cursor value "
                       "from an earlier result unchanged, or omit it to start over");
        return -1;
    }
    if (strcmp(d, s->id ? s->id : "") != 0) {
        json_decref(c);
        prov_error_set(err, "invalid_cursor", 0, false,
                       "the cursor belongs to another deployment: omit it, or pass the "
                       "cursor from a result for this deploymentId");
        return -1;
    }
    s->consumed = (unsigned long)n;
    free(s->first_id);
    s->first_id = f[0] ? strdup(f) : NULL;
    if (sse_set_last_id(&s->sse, i) != SSE_OK || (f[0] && !s->first_id)) {
        json_decref(c);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return -1;
    }
    if (st) {
        s->status = prov_status_parse(st);
        snprintf(s->provider_status, sizeof s->provider_status, "%s", p ? p : st);
    }
    if (u)
        s->url = strdup(u);
    const char *saved = json_string_value(json_object_get(c, "a"));
    if (saved && (!s->astate || !s->t->ops->stream_state_restore ||
                  s->t->ops->stream_state_restore(s->astate, saved) != 0)) {
        json_decref(c);
        prov_error_set(err, "invalid_cursor", 0, false,
                       "the cursor's stream state is not valid for this target: omit it to "
                       "start over");
        return -1;
    }
    json_decref(c);
    return 0;
}

/* ---- public ------------------------------------------------------------- */

prov_stream *prov_stream_open(prov_target *t, enum prov_stream_kind kind, const char *id,
                              const char *cursor, const prov_stream_callbacks *cb, void *ud,
                              prov_error *err)
{
    if (!t->ops->stream_spec || !t->ops->stream_parse) {
        prov_error_set(err, "unsupported", 0, false, "%s has no event streams",
                       t->ops->display_name);
        return NULL;
    }
    prov_stream *s = calloc(1, sizeof *s);
    if (!s) {
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    s->t = t;
    s->kind = kind;
    s->cb = *cb;
    s->ud = ud;
    s->status = PROV_ST_UNKNOWN;
    s->id = id ? strdup(id) : NULL;
    sse_init(&s->sse, 0, 0, on_sse_event, s);
    if ((!id || s->id) && t->ops->stream_state_new)
        s->astate = t->ops->stream_state_new(t, kind);
    /* The first connection's spec; reconnects ask the adapter again. */
    prov_stream_spec spec;
    prov_stream_spec_init(&spec);
    if ((id && !s->id) || t->ops->stream_spec(t, kind, id, &spec, err) != 0 ||
        (cursor && apply_cursor(s, cursor, err) != 0)) {
        if (id && !s->id)
            prov_error_set(err, "internal_error", 0, true, "out of memory");
        spec_wipe(&spec);
        stream_free(s);
        return NULL;
    }
    s->resume = spec.resume;
    s->reconnect = spec.reconnect;
    if (!cursor && spec.first_last_event_id[0] &&
        sse_set_last_id(&s->sse, spec.first_last_event_id) != SSE_OK) {
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        spec_wipe(&spec);
        stream_free(s);
        return NULL;
    }
    if (cursor && s->astate && t->ops->stream_state_complete &&
        t->ops->stream_state_complete(s->astate)) {
        /* Nothing is left to read: end on the next loop turn (callbacks
         * never run inside open). */
        spec_wipe(&spec);
        s->retry = malloc(sizeof *s->retry);
        if (!s->retry) {
            prov_error_set(err, "internal_error", 0, true, "out of memory");
            stream_free(s);
            return NULL;
        }
        s->complete_at_open = true;
        uv_timer_init(t->loop, s->retry);
        s->retry->data = s;
        uv_timer_start(s->retry, on_retry_timer, 0, 0);
        return s;
    }
    int rc = connect_with(s, &spec);
    spec_wipe(&spec);
    if (rc != 0) {
        prov_error_set(err, "internal_error", 0, true, "could not start the stream transfer");
        stream_free(s);
        return NULL;
    }
    return s;
}

void prov_stream_close(prov_stream *s)
{
    if (!s)
        return;
    if (s->in_dispatch) {
        s->dead = true;
        s->ended = true;
        if (s->req) {
            http_cancel(s->req);
            s->req = NULL;
        }
        return;
    }
    stream_free(s);
}

unsigned long prov_stream_events(const prov_stream *s) { return s->delivered; }
unsigned prov_stream_reconnects(const prov_stream *s) { return s->reconnects; }

void prov_stream_pause(prov_stream *s, bool paused)
{
    s->paused = paused;
    if (s->req)
        http_pause(s->req, paused);
}

prov_status prov_stream_status(const prov_stream *s, const char **provider_status,
                               const char **url)
{
    if (provider_status)
        *provider_status = s->provider_status[0] ? s->provider_status : NULL;
    if (url)
        *url = s->url;
    return s->status;
}
