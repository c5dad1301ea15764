/* relay.c — upstream events to MCP notifications (see relay.h). */
#include "tools/relay.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "mcp/jsonw.h"
#include "mcp/server.h"
#include "providers/utf8.h"
#include "tools/tool_internal.h"

/* Log line levels as the common event model names them, in severity order. */
enum { LV_DEBUG, LV_INFO, LV_WARN, LV_ERROR, LV_COUNT };
static const char *const level_words[LV_COUNT] = {"debug", "info", "warn", "error"};
static const enum mcp_level level_mcp[LV_COUNT] = {MCP_LOG_DEBUG, MCP_LOG_INFO,
                                                   MCP_LOG_WARNING, MCP_LOG_ERROR};

/* A line waiting for its chunk to be sent: its JSON text (a string (BUILD)
 * or {ts?,level,text,source?} (TAIL)), already escaped, at [off, off+len)
 * of the relay's pending buffer. No jansson value per line. */
typedef struct pending_line {
    size_t off, len;
    unsigned char level;
} pending_line;

/* One of the latest lines (BUILD), for lastLines: valid UTF-8, owned; the
 * buffers are reused as the ring turns. */
typedef struct last_line {
    char *text;
    size_t len, cap;
} last_line;

/* The pending buffer is kept between chunks up to this size (a relay that
 * saw one large burst does not hold its memory for the rest of the stream). */
#define PENDING_KEEP (16u << 10)

struct relay {
    mcp_request *req;          /* NULL once detached */
    uv_timer_t timer;          /* chunk window; the relay is freed in its close cb */
    bool finished;             /* finish/detach: nothing more is relayed */
    bool closing;

    enum relay_mode mode;
    char *logger;
    char *deployment_id;
    bool include_logs;
    int min_level;
    char *filter;
    size_t filter_len;
    size_t max_lines;
    bool wants_progress;

    unsigned long events;
    unsigned long log_lines;

    prov_status status;
    char *provider_status;
    char *url;
    char *failure_code, *failure_message;
    json_t *status_detail;     /* the latest STATUS event's detail object */

    double last_progress;      /* last progress value sent */
    bool sent_progress;
    bool pct_mode;             /* the provider reports percentages */

    pending_line *pending;
    size_t npending, pending_cap, pending_bytes;
    jsonw ptext;               /* the pending lines' JSON text */

    last_line last[RELAY_LAST_LINES];  /* ring of the latest lines (BUILD) */
    size_t last_head, last_count;

    json_t *kept;              /* TAIL: lines for the result */
    unsigned long dropped;
};

static int parse_level(const char *w)
{
    if (!w)
        return LV_INFO;
    /* Called per line: one comparison for the usual words. */
    switch (w[0]) {
    case 'd': return strcmp(w, "debug") == 0 ? LV_DEBUG : LV_INFO;
    case 't': return strcmp(w, "trace") == 0 ? LV_DEBUG : LV_INFO;
    case 'w': return strcmp(w, "warn") == 0 || strcmp(w, "warning") == 0 ? LV_WARN : LV_INFO;
    case 'e': return strcmp(w, "error") == 0 ? LV_ERROR : LV_INFO;
    case 'f': return strcmp(w, "fatal") == 0 ? LV_ERROR : LV_INFO;
    case 'c': return strcmp(w, "critical") == 0 ? LV_ERROR : LV_INFO;
    default: return LV_INFO;
    }
}

static void set_str(char **dst, const char *src)
{
    if (src && *dst && strcmp(*dst, src) == 0)
        return;
    free(*dst);
    *dst = src ? strdup(src) : NULL;
}

static void on_chunk_timer(uv_timer_t *t);

relay *relay_new(mcp_request *req, const char *target_name, const relay_opts *o)
{
    relay *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->req = req;
    r->mode = o->mode;
    r->include_logs = o->mode == RELAY_TAIL || o->include_logs;
    r->min_level = o->min_level ? parse_level(o->min_level) : LV_DEBUG;
    r->max_lines = o->max_lines;
    r->status = PROV_ST_UNKNOWN;
    r->wants_progress = mcp_req_wants_progress(req);
    size_t llen = strlen("deploy-mcp/") + strlen(target_name) + 1;
    r->logger = malloc(llen);
    if (r->logger)
        snprintf(r->logger, llen, "deploy-mcp/%s", target_name);
    if (o->deployment_id)
        r->deployment_id = strdup(o->deployment_id);
    if (o->filter && *o->filter) {
        r->filter = strdup(o->filter);
        r->filter_len = strlen(o->filter);
    }
    if (o->mode == RELAY_TAIL)
        r->kept = json_array();
    jsonw_init(&r->ptext, 0);
    if (!r->logger || (o->deployment_id && !r->deployment_id) ||
        (o->filter && *o->filter && !r->filter) || (o->mode == RELAY_TAIL && !r->kept)) {
        free(r->logger);
        free(r->deployment_id);
        free(r->filter);
        json_decref(r->kept);
        free(r);
        return NULL;
    }
    uv_timer_init(mcp_req_server(req)->loop, &r->timer);
    r->timer.data = r;
    return r;
}

/* ---- progress ----------------------------------------------------------- */

/* Progress may never repeat or fall (the first may be 0%). */
static bool raises(const relay *r, double progress)
{
    return !r->sent_progress || progress > r->last_progress;
}

static void send_progress(relay *r, double progress, double total, const char *msg)
{
    if (!r->req || !r->wants_progress || !raises(r, progress))
        return;
    r->last_progress = progress;
    r->sent_progress = true;
    mcp_req_progress(r->req, progress, total, msg);
}

/* A one-line message for a notification, never cut inside a character. */
static void clean_message(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    size_t n = strlen(s), i = n;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i > 0) {
        unsigned char lead = (unsigned char)s[i - 1];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        if (n - (i - 1) < need)
            s[i - 1] = '\0';
    }
}

static void appendf(char *buf, size_t cap, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void appendf(char *buf, size_t cap, size_t *off, const char *fmt, ...)
{
    if (*off >= cap - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *off, cap - *off, fmt, ap);
    va_end(ap);
    if (w > 0)
        *off = *off + (size_t)w < cap - 1 ? *off + (size_t)w : cap - 1;
}

static bool has_pct(const prov_event *ev) { return ev->progress >= 0 && ev->total > 0; }

static double pct_of(const prov_event *ev) { return ev->progress * 100.0 / ev->total; }

/* "building · step processing 40%", "ready · https://…", "failed · message". */
static void describe(const relay *r, const prov_event *ev, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    if (ev->kind == PROV_EV_ERROR)
        appendf(buf, cap, &off, "error");
    else if (ev->kind == PROV_EV_STATUS && ev->status != PROV_ST_UNKNOWN)
        appendf(buf, cap, &off, "%s", prov_status_name(ev->status));
    else if (r->status != PROV_ST_UNKNOWN)
        appendf(buf, cap, &off, "%s", prov_status_name(r->status));
    else
        appendf(buf, cap, &off, "%s", ev->kind == PROV_EV_STEP       ? "step"
                                      : ev->kind == PROV_EV_RESOURCE ? "resource"
                                                                     : "status");
    if (ev->kind == PROV_EV_STATUS && ev->provider_status && ev->status == PROV_ST_UNKNOWN)
        appendf(buf, cap, &off, " · %s", ev->provider_status);
    if (ev->step && *ev->step) {
        appendf(buf, cap, &off, " · step %s", ev->step);
        if (has_pct(ev))
            appendf(buf, cap, &off, " %.0f%%", pct_of(ev));
    } else if (has_pct(ev)) {
        appendf(buf, cap, &off, " · %.0f%%", pct_of(ev));
    }
    const char *emsg = ev->error && ev->error->message[0] ? ev->error->message : NULL;
    if (ev->message && *ev->message && (!emsg || strcmp(ev->message, emsg) != 0))
        appendf(buf, cap, &off, " · %s", ev->message);
    if (emsg)
        appendf(buf, cap, &off, " · %s", emsg);
    if (ev->url && *ev->url && ev->kind == PROV_EV_STATUS)
        appendf(buf, cap, &off, " · %s", ev->url);
    clean_message(buf);
}

/* ---- log chunks --------------------------------------------------------- */

static void pending_clear(relay *r)
{
    r->npending = 0;
    r->pending_bytes = 0;
    jsonw_reset(&r->ptext, PENDING_KEEP);
    uv_timer_stop(&r->timer);
}

void relay_flush(relay *r)
{
    if (!r || r->npending == 0)
        return;
    size_t n = r->npending;
    uv_timer_stop(&r->timer);
    /* One notification per run of same-level lines keeps the order. */
    for (size_t i = 0; i < n && r->req;) {
        size_t j = i;
        unsigned char lv = r->pending[i].level;
        while (j < n && r->pending[j].level == lv)
            j++;
        /* data: {deploymentId?, lines:[...]}, written from the lines'
         * stored JSON text. */
        jsonw *w = mcp_req_log_begin(r->req, level_mcp[lv], r->logger);
        if (w) {
            jsonw_char(w, '{');
            if (r->mode == RELAY_BUILD && r->deployment_id &&
                utf8_valid(r->deployment_id, strlen(r->deployment_id))) {
                jsonw_lit(w, "\"deploymentId\":");
                jsonw_cstr(w, r->deployment_id);
                jsonw_char(w, ',');
            }
            jsonw_lit(w, "\"lines\":[");
            for (size_t k = i; k < j; k++) {
                if (k > i)
                    jsonw_char(w, ',');
                jsonw_raw(w, r->ptext.buf + r->pending[k].off, r->pending[k].len);
            }
            jsonw_lit(w, "]}");
            mcp_req_log_end(r->req, w);
        }
        i = j;
    }
    pending_clear(r);
    if (r->req && !r->pct_mode) {
        char msg[64];
        snprintf(msg, sizeof msg, "log · %zu line%s", n, n == 1 ? "" : "s");
        send_progress(r, (double)r->events, -1, msg);
    }
}

static void on_chunk_timer(uv_timer_t *t)
{
    relay *r = t->data;
    relay_flush(r);
}

/* Queues the line whose JSON text was just written to r->ptext from `off`. */
static void pending_push(relay *r, size_t off, int level, size_t bytes)
{
    if (r->npending == r->pending_cap || r->ptext.failed) {
        size_t cap = r->pending_cap ? r->pending_cap * 2 : 64;
        pending_line *p = r->ptext.failed ? NULL : realloc(r->pending, cap * sizeof *p);
        if (!p) {
            /* Out of memory: send what we have rather than lose order. */
            r->ptext.failed = false;
            r->ptext.len = off;
            relay_flush(r);
            return;
        }
        r->pending = p;
        r->pending_cap = cap;
    }
    r->pending[r->npending].off = off;
    r->pending[r->npending].len = r->ptext.len - off;
    r->pending[r->npending].level = (unsigned char)level;
    r->npending++;
    r->pending_bytes += bytes;
    if (r->npending == 1)
        uv_timer_start(&r->timer, on_chunk_timer, RELAY_CHUNK_MS, 0);
    if (r->npending >= RELAY_CHUNK_MAX_LINES || r->pending_bytes >= RELAY_CHUNK_MAX_BYTES)
        relay_flush(r);
}

static void keep_last(relay *r, const char *text, size_t len)
{
    size_t slot = (r->last_head + r->last_count) % RELAY_LAST_LINES;
    if (r->last_count == RELAY_LAST_LINES) {
        slot = r->last_head;
        r->last_head = (r->last_head + 1) % RELAY_LAST_LINES;
    } else {
        r->last_count++;
    }
    last_line *l = &r->last[slot];
    if (len + 1 > l->cap || l->cap > 4 * (len + 64)) {
        char *b = malloc(len + 1);
        if (!b) {
            l->len = 0; /* keeps the ring's order; the line reads as "" */
            if (l->text)
                l->text[0] = '\0';
            return;
        }
        free(l->text);
        l->text = b;
        l->cap = len + 1;
    }
    memcpy(l->text, text, len);
    l->text[len] = '\0';
    l->len = len;
}

/* text[0..len) as valid UTF-8: itself, or a repaired copy in *fixed (the
 * caller frees it), as tool_json_text repairs. NULL text reads as "". NULL
 * when out of memory. */
static const char *valid_text(const char *text, size_t *len, char **fixed)
{
    *fixed = NULL;
    if (!text) {
        *len = 0;
        return "";
    }
    if (utf8_valid(text, *len))
        return text;
    *fixed = utf8_repair(text, *len, len);
    return *fixed;
}

/* memmem is a GNU extension; this is the portable equivalent. */
static bool contains(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    if (nlen == 0)
        return true;
    for (size_t i = 0; i + nlen <= hlen; i++) {
        const char *p = memchr(hay + i, needle[0], hlen - nlen - i + 1);
        if (!p)
            return false;
        i = (size_t)(p - hay);
        if (memcmp(p, needle, nlen) == 0)
            return true;
    }
    return false;
}

static void relay_line(relay *r, const prov_log_line *l)
{
    int level = parse_level(l->level);
    size_t off = r->ptext.len;
    char *fixed;
    if (r->mode == RELAY_BUILD) {
        size_t len = l->len;
        const char *text = valid_text(l->text, &len, &fixed);
        if (!text)
            return;
        keep_last(r, text, len);
        jsonw_str(&r->ptext, text, len);
        free(fixed);
        pending_push(r, off, level, l->len);
        return;
    }
    if (level < r->min_level)
        return;
    if (r->filter && !contains(l->text, l->len, r->filter, r->filter_len))
        return;
    /* {ts?, level, text, source?}: as JSON text for the notification, and
     * as a jansson object only when the result keeps it. */
    char *fixed_ts = NULL, *fixed_src = NULL;
    size_t tlen = l->len, tslen = l->ts ? strlen(l->ts) : 0;
    size_t srclen = l->source ? strlen(l->source) : 0;
    const char *text = valid_text(l->text, &tlen, &fixed);
    const char *ts = l->ts && *l->ts ? valid_text(l->ts, &tslen, &fixed_ts) : NULL;
    const char *src = l->source && *l->source ? valid_text(l->source, &srclen, &fixed_src)
                                              : NULL;
    if (json_array_size(r->kept) < r->max_lines) {
        json_t *o = json_object();
        if (o) {
            if (ts)
                json_object_set_new(o, "ts", json_stringn_nocheck(ts, tslen));
            json_object_set_new(o, "level", json_string(level_words[level]));
            if (text)
                json_object_set_new(o, "text", json_stringn_nocheck(text, tlen));
            if (src)
                json_object_set_new(o, "source", json_stringn_nocheck(src, srclen));
            json_array_append_new(r->kept, o);
        }
    } else {
        r->dropped++;
    }
    jsonw *w = &r->ptext;
    jsonw_char(w, '{');
    if (ts) {
        jsonw_lit(w, "\"ts\":");
        jsonw_str(w, ts, tslen);
        jsonw_char(w, ',');
    }
    jsonw_lit(w, "\"level\":");
    jsonw_cstr(w, level_words[level]);
    if (text) {
        jsonw_lit(w, ",\"text\":");
        jsonw_str(w, text, tlen);
    }
    if (src) {
        jsonw_lit(w, ",\"source\":");
        jsonw_str(w, src, srclen);
    }
    jsonw_char(w, '}');
    free(fixed);
    free(fixed_ts);
    free(fixed_src);
    pending_push(r, off, level, l->len);
}

/* ---- events ------------------------------------------------------------- */

static void set_failure(relay *r, const char *code, const char *message)
{
    set_str(&r->failure_code, code && *code ? code : "failed");
    set_str(&r->failure_message, message && *message ? message : "the deployment failed");
}

void relay_event(relay *r, const prov_event *ev)
{
    if (!r || r->finished)
        return;
    if (ev->kind == PROV_EV_LOG) {
        r->events++;
        r->log_lines += ev->nlines;
        if (!r->include_logs)
            return;
        for (size_t i = 0; i < ev->nlines && !r->finished; i++)
            relay_line(r, &ev->lines[i]);
        return;
    }

    /* Lines that came before this event go first, with the progress count
     * they reached, so this event's count is higher still. */
    relay_flush(r);
    if (r->finished)
        return;
    r->events++;

    /* Only STATUS events carry a status: other kinds may leave the field
     * zero-initialised, which would read as "queued". */
    if (ev->kind == PROV_EV_STATUS && ev->status != PROV_ST_UNKNOWN) {
        r->status = ev->status;
        set_str(&r->provider_status, ev->provider_status);
    }
    if (ev->kind == PROV_EV_STATUS && json_is_object(ev->detail)) {
        json_decref(r->status_detail);
        r->status_detail = json_incref(ev->detail);
    }
    if (ev->url && *ev->url)
        set_str(&r->url, ev->url);
    if (ev->kind == PROV_EV_ERROR)
        set_failure(r, ev->error ? ev->error->code : "error",
                    ev->error && ev->error->message[0] ? ev->error->message : ev->message);
    else if (ev->kind == PROV_EV_STATUS && ev->status == PROV_ST_FAILED && ev->error)
        set_failure(r, ev->error->code, ev->error->message);

    /* Without a progress token the client asked for no progress: status
     * and step events reach it through the result only. */
    if (!r->req || !r->wants_progress)
        return;
    char msg[RELAY_MESSAGE_MAX];
    describe(r, ev, msg, sizeof msg);
    if (has_pct(ev))
        r->pct_mode = true;
    if (r->pct_mode) {
        if (has_pct(ev) && raises(r, ev->progress)) {
            send_progress(r, ev->progress, ev->total, msg);
            return;
        }
        /* Progress may not repeat or fall: say it as a log message. */
        bool bad = ev->kind == PROV_EV_ERROR ||
                   (ev->kind == PROV_EV_STATUS && ev->status == PROV_ST_FAILED);
        enum mcp_level lv = bad ? MCP_LOG_ERROR : MCP_LOG_INFO;
        if (mcp_req_log_enabled(r->req, lv)) {
            json_t *data = json_object();
            if (data) {
                if (r->deployment_id)
                    json_object_set_new(data, "deploymentId", json_string(r->deployment_id));
                json_object_set_new(data, "message", tool_json_text(msg, strlen(msg)));
                mcp_req_log(r->req, lv, r->logger, data);
            }
        }
        return;
    }
    send_progress(r, (double)r->events, -1, msg);
}

/* ---- lifetime ----------------------------------------------------------- */

void relay_finish(relay *r)
{
    if (!r || r->finished)
        return;
    relay_flush(r);
    r->finished = true;
}

void relay_detach(relay *r)
{
    if (!r)
        return;
    r->req = NULL;
    r->finished = true;
    pending_clear(r);
}

static void on_timer_closed(uv_handle_t *h)
{
    relay *r = h->data;
    pending_clear(r);
    free(r->pending);
    jsonw_free(&r->ptext);
    for (size_t i = 0; i < RELAY_LAST_LINES; i++)
        free(r->last[i].text);
    json_decref(r->kept);
    free(r->logger);
    free(r->deployment_id);
    free(r->filter);
    free(r->provider_status);
    free(r->url);
    free(r->failure_code);
    free(r->failure_message);
    json_decref(r->status_detail);
    free(r);
}

void relay_free(relay *r)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    r->finished = true;
    r->req = NULL;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}

/* ---- state -------------------------------------------------------------- */

void relay_seed_status(relay *r, prov_status st, const char *provider_status, const char *url)
{
    if (st != PROV_ST_UNKNOWN) {
        r->status = st;
        set_str(&r->provider_status, provider_status);
    }
    if (url && *url)
        set_str(&r->url, url);
}

void relay_apply_deployment(relay *r, json_t *dep)
{
    if (!json_is_object(dep))
        return;
    prov_status st = prov_status_parse(json_string_value(json_object_get(dep, "status")));
    relay_seed_status(r, st, json_string_value(json_object_get(dep, "providerStatus")),
                      json_string_value(json_object_get(dep, "url")));
    json_t *err = json_object_get(dep, "error");
    if (st == PROV_ST_FAILED && json_is_object(err)) {
        json_t *code = json_object_get(err, "code");
        char codebuf[32];
        const char *c = json_string_value(code);
        if (!c && json_is_integer(code)) {
            snprintf(codebuf, sizeof codebuf, "%lld", (long long)json_integer_value(code));
            c = codebuf;
        }
        set_failure(r, c, json_string_value(json_object_get(err, "message")));
    }
}

static json_t *failure_json(const relay *r)
{
    if (r->failure_code)
        return json_pack("{s:s, s:s}", "code", r->failure_code, "message", r->failure_message);
    if (r->status != PROV_ST_FAILED)
        return NULL;
    char msg[256];
    snprintf(msg, sizeof msg, "the deployment failed (platform status: %s)",
             r->provider_status ? r->provider_status : "failed");
    return json_pack("{s:s, s:s}", "code", "deployment_failed", "message", msg);
}

void relay_update_deployment(const relay *r, json_t *dep)
{
    if (!json_is_object(dep))
        return;
    if (r->status != PROV_ST_UNKNOWN)
        json_object_set_new(dep, "status", json_string(prov_status_name(r->status)));
    if (r->provider_status)
        json_object_set_new(dep, "providerStatus", json_string(r->provider_status));
    if (r->url)
        json_object_set_new(dep, "url", json_string(r->url));
    if (r->status_detail)
        json_object_update(dep, r->status_detail);
    if (r->status == PROV_ST_FAILED) {
        json_t *f = failure_json(r);
        if (f)
            json_object_set_new(dep, "error", f);
    }
}

prov_status relay_status(const relay *r) { return r->status; }
unsigned long relay_event_count(const relay *r) { return r->events; }
unsigned long relay_log_line_count(const relay *r) { return r->log_lines; }

json_t *relay_stream_summary(const relay *r, const char *cursor, uint64_t duration_ms)
{
    json_t *sc = json_object();
    json_t *last = json_array();
    if (!sc || !last) {
        json_decref(sc);
        json_decref(last);
        return NULL;
    }
    for (size_t i = 0; i < r->last_count; i++) {
        const last_line *l = &r->last[(r->last_head + i) % RELAY_LAST_LINES];
        json_array_append_new(last, json_stringn_nocheck(l->text ? l->text : "", l->len));
    }
    json_object_set_new(sc, "deploymentId",
                        r->deployment_id ? json_string(r->deployment_id) : json_null());
    json_object_set_new(sc, "status", json_string(prov_status_name(r->status)));
    json_object_set_new(sc, "terminal", json_boolean(prov_status_terminal(r->status)));
    if (r->provider_status)
        json_object_set_new(sc, "providerStatus", json_string(r->provider_status));
    if (r->url)
        json_object_set_new(sc, "url", json_string(r->url));
    json_object_set_new(sc, "eventCount", json_integer((json_int_t)r->events));
    json_object_set_new(sc, "logLineCount", json_integer((json_int_t)r->log_lines));
    json_object_set_new(sc, "lastLines", last);
    json_t *f = failure_json(r);
    if (f)
        json_object_set_new(sc, "failure", f);
    json_object_set_new(sc, "cursor", json_string(cursor ? cursor : ""));
    json_object_set_new(sc, "durationMs", json_integer((json_int_t)duration_ms));
    return sc;
}

json_t *relay_tail_summary(const relay *r, const char *cursor)
{
    json_t *lines = json_deep_copy(r->kept);
    if (!lines)
        return NULL;
    return json_pack("{s:o, s:I, s:I, s:s}", "lines", lines, "count",
                     (json_int_t)json_array_size(lines), "dropped", (json_int_t)r->dropped,
                     "cursor", cursor ? cursor : "");
}
