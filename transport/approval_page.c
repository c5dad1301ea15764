/* approval_page.c — the approval page's HTTP server (see approval_page.h). */
#include "transport/approval_page.h"

#include <ctype.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mcp/log.h"
#include "providers/utf8.h"

#define APAGE_MAX_URL 2048
#define APAGE_HOST_MAX 256
#define APAGE_FIELD_MAX 4096
#define APAGE_LOCK_SLOTS 256
#define APAGE_HTML_INITIAL 8192

typedef struct lock_slot {
    char id[APR_ID_LEN + 1];
    unsigned bad;
    uint64_t locked_until;
} lock_slot;

struct apage {
    uv_loop_t *loop;
    uv_tcp_t server;
    apr_store *store;
    char *secret_env;
    char base_url[APAGE_MAX_URL];
    char bound_host[APAGE_HOST_MAX];
    char public_host[APAGE_HOST_MAX];
    apage_decided_fn decided;
    void *ud;
    int nconns;
    struct conn *conns;
    bool stopping;
    int open_handles;
    int pending_decisions;      /* journal writes whose callback still uses this page */
    lock_slot locks[APAGE_LOCK_SLOTS];
};

typedef struct conn {
    apage *p;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    char *in;
    size_t in_len;
    char *out;
    bool responded;
    bool closing;
    bool head;                  /* a HEAD request: headers only */
    int open_handles;
    char peer[64];
    struct conn *prev, *next;
} conn;

/* ---- small buffers -------------------------------------------------------- */

typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool failed;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : APAGE_HTML_INITIAL;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->failed = true;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* HTML-escapes untrusted text (agent notes, platform strings). */
static void sb_esc(sbuf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': sb_puts(b, "&amp;"); break;
        case '<': sb_puts(b, "&lt;"); break;
        case '>': sb_puts(b, "&gt;"); break;
        case '"': sb_puts(b, "&quot;"); break;
        case '\'': sb_puts(b, "&#39;"); break;
        default: sb_add(b, s, 1);
        }
    }
}

/* ---- connections ----------------------------------------------------------- */

static void maybe_free_page(apage *p)
{
    if (p->stopping && p->open_handles == 0 && p->nconns == 0 && p->pending_decisions == 0) {
        free(p->secret_env);
        free(p);
    }
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    apage *p = c->p;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    p->nconns--;
    free(c->in);
    free(c->out);
    free(c);
    maybe_free_page(p);
}

static void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    conn_close(req->data);
}

static void respond(conn *c, int code, const char *reason, const char *ctype, const char *body,
                    size_t body_len, const char *extra_headers)
{
    if (c->responded || c->closing)
        return;
    c->responded = true;
    sbuf b = {0};
    sb_printf(&b, "HTTP/1.1 %d %s\r\n", code, reason);
    sb_printf(&b, "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, body_len);
    sb_puts(&b, "Connection: close\r\nCache-Control: no-store\r\n"
                "X-Frame-Options: DENY\r\nX-Content-Type-Options: nosniff\r\n"
                /* not no-referrer: with it browsers send "Origin: null" on the
                 * form POST, which the same-origin check must refuse */
                "Referrer-Policy: same-origin\r\n"
                "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; "
                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'\r\n");
    if (extra_headers)
        sb_puts(&b, extra_headers);
    sb_puts(&b, "\r\n");
    if (!c->head)               /* HEAD: the same headers, no body */
        sb_add(&b, body, body_len);
    if (b.failed) {
        free(b.s);
        conn_close(c);
        return;
    }
    c->out = b.s;
    uv_buf_t buf = uv_buf_init(c->out, (unsigned)b.len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0)
        conn_close(c);
}

static const char page_style[] =
    "<style>body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;"
    "max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1d2330;line-height:1.5}"
    "h1{font-size:1.5rem;margin-bottom:.25rem}.sub{color:#5b6475;margin-top:0}"
    "table{border-collapse:collapse;width:100%;margin:1rem 0}"
    "th{text-align:left;width:11rem;color:#5b6475;font-weight:600;vertical-align:top;"
    "padding:.35rem .5rem .35rem 0}td{padding:.35rem 0;word-break:break-word}"
    ".plan{background:#f4f6fb;border-left:4px solid #3559e0;padding:.75rem 1rem;"
    "font-size:1.05rem}.status{display:inline-block;padding:.1rem .6rem;border-radius:1rem;"
    "background:#eef0f5;font-weight:600}.status.pending_approval{background:#fff4d6}"
    ".status.published{background:#dff5e3}.status.failed,.status.rejected,.status.expired"
    "{background:#fde2e2}form{margin-top:1.5rem;border-top:1px solid #e3e6ee;padding-top:1rem}"
    "label{display:block;margin:.6rem 0 .2rem;font-weight:600}"
    "input,textarea{width:100%;box-sizing:border-box;padding:.45rem;font:inherit;"
    "border:1px solid #c9cfdb;border-radius:.35rem}.buttons{margin-top:1rem;display:flex;"
    "gap:.75rem}button{padding:.55rem 1.4rem;font:inherit;font-weight:600;border:0;"
    "border-radius:.35rem;cursor:pointer}.approve{background:#1f8a3b;color:#fff}"
    ".reject{background:#c62828;color:#fff}.msg{padding:.75rem 1rem;border-radius:.35rem;"
    "background:#eef0f5}pre{white-space:pre-wrap;margin:0}</style>";

static void html_head(sbuf *b, const char *title)
{
    sb_puts(b, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
               "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>");
    sb_esc(b, title);
    sb_puts(b, "</title>");
    sb_puts(b, page_style);
    sb_puts(b, "</head><body>");
}

static void send_html(conn *c, int code, const char *reason, sbuf *b)
{
    sb_puts(b, "</body></html>");
    if (b->failed)
        respond(c, 500, "Internal Server Error", "text/plain", "out of memory", 13, NULL);
    else
        respond(c, code, reason, "text/html; charset=utf-8", b->s, b->len, NULL);
    free(b->s);
}

static void send_message(conn *c, int code, const char *reason, const char *title,
                         const char *msg)
{
    sbuf b = {0};
    html_head(&b, title);
    sb_puts(&b, "<h1>");
    sb_esc(&b, title);
    sb_puts(&b, "</h1><p class=\"msg\">");
    sb_esc(&b, msg);
    sb_puts(&b, "</p>");
    send_html(c, code, reason, &b);
}

static void fmt_time(char *out, size_t n, int64_t ms)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, n, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void row(sbuf *b, const char *k, const char *v)
{
    if (!v || !*v)
        return;
    sb_puts(b, "<tr><th>");
    sb_esc(b, k);
    sb_puts(b, "</th><td>");
    sb_esc(b, v);
    sb_puts(b, "</td></tr>");
}

static void render_request(conn *c, apr_request *r, const char *notice)
{
    sbuf b = {0};
    char created[64], expires[64], decided[64] = "";
    fmt_time(created, sizeof created, r->created_ms);
    fmt_time(expires, sizeof expires, r->expires_ms);
    if (r->decided_ms)
        fmt_time(decided, sizeof decided, r->decided_ms);
    html_head(&b, "Approve production publish");
    sb_puts(&b, "<h1>Production publish request</h1><p class=\"sub\">An AI agent asked to "
                "publish to production. Nothing happens unless a person approves it here.</p>");
    if (notice) {
        /* The answer to a form POST: reloading it would post again (and be
         * refused), so link to the page itself for the current status. */
        sb_puts(&b, "<p class=\"msg\">");
        sb_esc(&b, notice);
        sb_puts(&b, " <a id=\"refresh\" href=\"");
        sb_esc(&b, r->id);
        sb_puts(&b, "\">Show the current status</a></p>");
    }
    sb_puts(&b, "<p class=\"plan\" id=\"plan\">");
    sb_esc(&b, r->plan ? r->plan : "publish the source deployment to production");
    sb_puts(&b, "</p><table>");
    sb_printf(&b, "<tr><th>Status</th><td><span class=\"status %s\" id=\"status\">%s</span>"
                  "</td></tr>", apr_status_name(r->status), apr_status_name(r->status));
    row(&b, "Request", r->id);
    row(&b, "Target", r->target);
    row(&b, "Platform", r->provider);
    row(&b, "Source deployment", r->source_id);
    static const struct { const char *key, *label; } src_fields[] = {
        {"url", "Preview URL"}, {"branch", "Branch"}, {"commitSha", "Commit"},
        {"artifactDigest", "Artifact SHA-256"}, {"uploadUuid", "Upload"},
        {"bundleKey", "Bundle"}, {"productionProject", "Production project"},
        {"changesSummary", "Staged changes"},
    };
    for (size_t i = 0; i < sizeof src_fields / sizeof src_fields[0]; i++)
        row(&b, src_fields[i].label,
            json_string_value(json_object_get(r->source, src_fields[i].key)));
    json_t *changes = json_object_get(r->source, "changes");
    if (json_is_array(changes) && json_array_size(changes) > 0) {
        sb_puts(&b, "<tr><th>Changes</th><td><pre>");
        size_t i;
        json_t *ch;
        json_array_foreach(changes, i, ch) {
            if (i >= 200) {
                sb_printf(&b, "… and %zu more\n", json_array_size(changes) - i);
                break;
            }
            sb_esc(&b, json_string_value(ch));
            sb_puts(&b, "\n");
        }
        sb_puts(&b, "</pre></td></tr>");
    }
    row(&b, "Agent's notes", r->notes);
    row(&b, "Requested", created);
    row(&b, "Expires", expires);
    row(&b, "Decided", decided);
    row(&b, "Decided by", r->decided_by);
    row(&b, "Decided from", r->decided_from);
    row(&b, "Decision note", r->decision_note);
    row(&b, "Production deployment", r->production_id);
    row(&b, "Publish error", r->error);
    sb_puts(&b, "</table>");
    if (r->status == APR_PENDING) {
        /* Relative (the page is /approvals/<id>): still right when a proxy
         * serves it under a path prefix (approval.publicUrl with a path). */
        sb_puts(&b, "<form method=\"post\" action=\"");
        sb_esc(&b, r->id);
        sb_puts(&b, "\"><input type=\"hidden\" name=\"csrf\" value=\"");
        sb_esc(&b, r->csrf);
        sb_puts(&b, "\"><label for=\"name\">Your name</label>"
                    "<input id=\"name\" name=\"name\" maxlength=\"100\" required>"
                    "<label for=\"secret\">Approver secret</label>"
                    "<input id=\"secret\" name=\"secret\" type=\"password\" "
                    "autocomplete=\"off\" required>"
                    "<label for=\"note\">Note (optional)</label>"
                    "<textarea id=\"note\" name=\"note\" rows=\"2\" maxlength=\"1000\"></textarea>"
                    "<div class=\"buttons\"><button class=\"approve\" name=\"decision\" "
                    "value=\"approve\" id=\"approve\">Approve and publish</button>"
                    "<button class=\"reject\" name=\"decision\" value=\"reject\" id=\"reject\">"
                    "Reject</button></div></form>");
    }
    send_html(c, 200, "OK", &b);
}

/* ---- request parsing ------------------------------------------------------ */

/* memmem without _GNU_SOURCE. */
static char *find_bytes(const char *hay, size_t n, const char *needle, size_t k)
{
    for (size_t i = 0; k <= n && i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return (char *)(uintptr_t)(hay + i);
    return NULL;
}

typedef struct http_req_view {
    char method[8];
    char path[APAGE_MAX_URL];
    const char *host, *origin, *ctype, *clen, *te;
    size_t host_len, origin_len, ctype_len, clen_len, te_len;
    const char *body;
    size_t body_len;
} http_req_view;

static bool header_is(const char *line, size_t n, const char *name, const char **val,
                      size_t *vlen)
{
    size_t k = strlen(name);
    if (n <= k || line[k] != ':' || strncasecmp(line, name, k) != 0)
        return false;
    const char *v = line + k + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *val = v;
    *vlen = (size_t)(end - v);
    return true;
}

/* Returns 1 when complete, 0 when more bytes are needed, or a negative
 * HTTP status to answer with. */
static int parse(conn *c, http_req_view *v)
{
    char *hend = find_bytes(c->in, c->in_len, "\r\n\r\n", 4);
    if (!hend)
        return c->in_len >= APAGE_MAX_REQUEST_BYTES ? -431 : 0;
    memset(v, 0, sizeof *v);
    char *line = c->in, *eol = find_bytes(line, (size_t)(hend - line) + 2, "\r\n", 2);
    *eol = '\0';
    /* "METHOD SP PATH SP HTTP/1.x" */
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || (size_t)(sp1 - line) >= sizeof v->method ||
        (size_t)(sp2 - sp1 - 1) >= sizeof v->path || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
        return -400;
    memcpy(v->method, line, (size_t)(sp1 - line));
    v->method[sp1 - line] = '\0';
    memcpy(v->path, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    v->path[sp2 - sp1 - 1] = '\0';
    for (char *h = eol + 2; h < hend; ) {
        char *e = find_bytes(h, (size_t)(hend + 2 - h), "\r\n", 2);
        size_t n = (size_t)(e - h);
        if (!header_is(h, n, "Host", &v->host, &v->host_len) &&
            !header_is(h, n, "Origin", &v->origin, &v->origin_len) &&
            !header_is(h, n, "Content-Type", &v->ctype, &v->ctype_len) &&
            !header_is(h, n, "Content-Length", &v->clen, &v->clen_len))
            header_is(h, n, "Transfer-Encoding", &v->te, &v->te_len);
        h = e + 2;
    }
    if (v->te)
        return -411;
    size_t body_len = 0;
    if (v->clen) {
        char num[24];
        if (v->clen_len == 0 || v->clen_len >= sizeof num)
            return -400;
        memcpy(num, v->clen, v->clen_len);
        num[v->clen_len] = '\0';
        char *end;
        unsigned long long n = strtoull(num, &end, 10);
        if (*end || n > APAGE_MAX_REQUEST_BYTES)
            return -413;
        body_len = (size_t)n;
    }
    size_t head = (size_t)(hend + 4 - c->in);
    if (head + body_len > APAGE_MAX_REQUEST_BYTES)
        return -413;
    if (c->in_len < head + body_len)
        return 0;
    v->body = hend + 4;
    v->body_len = body_len;
    return 1;
}

/* Host part of "host:port" / "[v6]:port" (no port). */
static void host_only(const char *h, size_t n, char *out, size_t outn)
{
    size_t end = n;
    if (n > 0 && h[0] == '[') {
        const char *rb = memchr(h, ']', n);
        end = rb ? (size_t)(rb - h) + 1 : n;
    } else {
        const char *colon = memchr(h, ':', n);
        if (colon)
            end = (size_t)(colon - h);
    }
    if (end >= outn)
        end = outn - 1;
    for (size_t i = 0; i < end; i++)
        out[i] = (char)tolower((unsigned char)h[i]);
    out[end] = '\0';
}

static bool host_allowed(const apage *p, const char *host)
{
    return strcmp(host, "localhost") == 0 || strcmp(host, "127.0.0.1") == 0 ||
           strcmp(host, "[::1]") == 0 || (p->bound_host[0] && strcmp(host, p->bound_host) == 0) ||
           (p->public_host[0] && strcmp(host, p->public_host) == 0);
}

static bool origin_allowed(const apage *p, const char *o, size_t n)
{
    const char *rest = NULL;
    if (n > 7 && strncmp(o, "http://", 7) == 0)
        rest = o + 7;
    else if (n > 8 && strncmp(o, "https://", 8) == 0)
        rest = o + 8;
    if (!rest)
        return false;
    char host[APAGE_HOST_MAX];
    host_only(rest, n - (size_t)(rest - o), host, sizeof host);
    return host_allowed(p, host);
}

/* Decodes one application/x-www-form-urlencoded field into out. */
static bool form_field(const char *body, size_t len, const char *name, char *out, size_t outn)
{
    size_t k = strlen(name);
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *fe = amp ? amp : end;
        if ((size_t)(fe - p) > k && strncmp(p, name, k) == 0 && p[k] == '=') {
            size_t o = 0;
            for (const char *q = p + k + 1; q < fe && o + 1 < outn; q++) {
                if (*q == '+') {
                    out[o++] = ' ';
                } else if (*q == '%' && fe - q >= 3 && isxdigit((unsigned char)q[1]) &&
                           isxdigit((unsigned char)q[2])) {
                    char hx[3] = {q[1], q[2], 0};
                    out[o++] = (char)strtol(hx, NULL, 16);
                    q += 2;
                } else {
                    out[o++] = *q;
                }
            }
            out[o] = '\0';
            return true;
        }
        p = fe + 1;
    }
    out[0] = '\0';
    return false;
}

/* Makes typed text safe to journal and log, in place: invalid UTF-8 becomes
 * U+FFFD (jansson refuses invalid UTF-8, so the decision record could not be
 * written), and control characters become spaces (a newline in a name would
 * forge log lines); `keep_newlines` spares \n, \r and \t (notes). The result is
 * cut to fit n bytes on a character boundary. */
static void clean_text(char *s, size_t n, bool keep_newlines)
{
    size_t len = 0;
    char *fixed = utf8_repair(s, strlen(s), &len);
    if (!fixed) {
        s[0] = '\0';
        return;
    }
    len = utf8_truncate(fixed, len, n - 1);
    memcpy(s, fixed, len);
    s[len] = '\0';
    free(fixed);
    for (char *q = s; *q; q++) {
        unsigned char ch = (unsigned char)*q;
        if ((ch < 0x20 || ch == 0x7f) &&
            !(keep_newlines && (ch == '\n' || ch == '\r' || ch == '\t')))
            *q = ' ';
    }
}

/* Constant-time comparison: the time taken does not depend on where the
 * strings first differ. */
static bool secret_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++)
        diff |= (unsigned char)(a[i] ^ b[lb ? i % lb : 0]);
    return diff == 0;
}

static lock_slot *lock_for(apage *p, const char *id)
{
    lock_slot *free_slot = NULL, *oldest = &p->locks[0];
    for (size_t i = 0; i < APAGE_LOCK_SLOTS; i++) {
        if (strcmp(p->locks[i].id, id) == 0)
            return &p->locks[i];
        if (!p->locks[i].id[0] && !free_slot)
            free_slot = &p->locks[i];
        if (p->locks[i].locked_until < oldest->locked_until)
            oldest = &p->locks[i];
    }
    lock_slot *s = free_slot ? free_slot : oldest;
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", id);
    return s;
}

typedef struct decision_ctx {
    apage *p;
    char id[APR_ID_LEN + 1];
} decision_ctx;

static void on_decision_durable(void *ud, int status)
{
    decision_ctx *d = ud;
    apage *p = d->p;
    /* Once stopping, the gate is going away: a durable approval is carried
     * out by the next start-up (the journal says approved). The page itself
     * stays allocated until this callback ran (pending_decisions). */
    apr_request *r = p->stopping ? NULL : apr_get(p->store, d->id);
    if (r && status == 0 && p->decided)
        p->decided(p->ud, r);
    else if (r && status != 0 && r->status == APR_APPROVED)
        apr_set_status(p->store, r, APR_FAILED, NULL,
                       "the decision could not be recorded in the journal; nothing was "
                       "published", NULL, NULL);
    free(d);
    p->pending_decisions--;
    maybe_free_page(p);
}

static void handle_post(conn *c, apr_request *r, const http_req_view *v)
{
    apage *p = c->p;
    char csrf[64], secret[APAGE_FIELD_MAX], decision[16], name[128], note[1024];
    form_field(v->body, v->body_len, "csrf", csrf, sizeof csrf);
    form_field(v->body, v->body_len, "secret", secret, sizeof secret);
    form_field(v->body, v->body_len, "decision", decision, sizeof decision);
    form_field(v->body, v->body_len, "name", name, sizeof name);
    form_field(v->body, v->body_len, "note", note, sizeof note);
    clean_text(name, sizeof name, false);
    clean_text(note, sizeof note, true);
    bool approve = strcmp(decision, "approve") == 0;
    if (!approve && strcmp(decision, "reject") != 0) {
        send_message(c, 400, "Bad Request", "Not decided", "Choose Approve or Reject.");
        return;
    }
    if (!secret_equal(csrf, r->csrf)) {
        send_message(c, 403, "Forbidden", "Form expired",
                     "This form is stale or was not served by this page. Reload the page "
                     "and decide again.");
        return;
    }
    lock_slot *lk = lock_for(p, r->id);
    uint64_t now = uv_now(p->loop);
    if (lk->locked_until > now) {
        send_message(c, 429, "Too Many Requests", "Locked",
                     "Too many wrong approver secrets for this request. Wait a minute.");
        return;
    }
    const char *expected = getenv(p->secret_env);
    if (!expected || !*expected || !secret_equal(secret, expected)) {
        if (++lk->bad >= APAGE_MAX_BAD_SECRETS) {
            lk->bad = 0;
            lk->locked_until = now + APAGE_LOCK_MS;
        }
        log_warn("approval %s: wrong approver secret from %s", r->id, c->peer);
        send_message(c, 403, "Forbidden", "Wrong approver secret",
                     "The approver secret is not correct. Nothing was decided.");
        return;
    }
    lk->bad = 0;
    decision_ctx *d = calloc(1, sizeof *d);
    char err[256];
    if (!d) {
        send_message(c, 500, "Internal Server Error", "Error", "Out of memory.");
        return;
    }
    d->p = p;
    memcpy(d->id, r->id, sizeof d->id);
    p->pending_decisions++;
    if (apr_decide(p->store, r, approve, name[0] ? name : "anonymous", c->peer,
                   note[0] ? note : NULL, on_decision_durable, d, err, sizeof err) != 0) {
        p->pending_decisions--;
        free(d);
        send_message(c, 409, "Conflict", "Not decided", err);
        return;
    }
    log_info("approval %s: %s by %s from %s", r->id, approve ? "approved" : "rejected",
             name[0] ? name : "anonymous", c->peer);
    render_request(c, r, approve ? "Approved. deploy-mcp is publishing now."
                                 : "Rejected. Nothing will be published.");
}

static void handle(conn *c, const http_req_view *v)
{
    apage *p = c->p;
    c->head = strcmp(v->method, "HEAD") == 0;
    char host[APAGE_HOST_MAX] = "";
    if (v->host)
        host_only(v->host, v->host_len, host, sizeof host);
    if (!v->host || !host_allowed(p, host)) {
        /* DNS rebinding: a page on another name must not reach this server. */
        send_message(c, 403, "Forbidden", "Forbidden", "Unknown Host header.");
        return;
    }
    if (v->origin && !origin_allowed(p, v->origin, v->origin_len)) {
        send_message(c, 403, "Forbidden", "Forbidden", "Cross-origin requests are refused.");
        return;
    }
    const char *prefix = "/approvals/";
    size_t pl = strlen(prefix);
    if (strncmp(v->path, prefix, pl) != 0) {
        if (strcmp(v->path, "/") == 0)
            send_message(c, 200, "OK", "deploy-mcp approvals",
                         "Open the approval link the agent gave you.");
        else
            send_message(c, 404, "Not Found", "Not found", "No such page.");
        return;
    }
    char id[APR_ID_LEN + 2];
    snprintf(id, sizeof id, "%s", v->path + pl);
    char *q = strchr(id, '?');
    if (q)
        *q = '\0';
    apr_request *r = strlen(id) == APR_ID_LEN ? apr_get(p->store, id) : NULL;
    if (!r) {
        send_message(c, 404, "Not Found", "Unknown request",
                     "There is no approval request with this id.");
        return;
    }
    if (strcmp(v->method, "GET") == 0 || strcmp(v->method, "HEAD") == 0) {
        render_request(c, r, NULL);
    } else if (strcmp(v->method, "POST") == 0) {
        if (!v->ctype || v->ctype_len < 33 ||
            strncasecmp(v->ctype, "application/x-www-form-urlencoded", 33) != 0) {
            send_message(c, 415, "Unsupported Media Type", "Bad form", "Submit the form.");
            return;
        }
        handle_post(c, r, v);
    } else {
        send_message(c, 405, "Method Not Allowed", "Not allowed", "Use GET or POST.");
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    (void)suggested;
    size_t room = APAGE_MAX_REQUEST_BYTES + 1 - c->in_len;
    buf->base = room ? c->in + c->in_len : NULL;
    buf->len = room;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn *c = s->data;
    (void)buf;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->in_len += (size_t)n;
    if (c->responded)
        return;
    http_req_view v;
    int r = parse(c, &v);
    if (r == 0)
        return;
    uv_read_stop(s);
    if (r < 0) {
        int code = -r;
        const char *reason = code == 411 ? "Length Required" : code == 413 ? "Payload Too Large"
                           : code == 431 ? "Request Header Fields Too Large" : "Bad Request";
        send_message(c, code, reason, reason, "The request could not be read.");
        return;
    }
    handle(c, &v);
}

static void on_idle(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_connection(uv_stream_t *server, int status)
{
    apage *p = server->data;
    if (status < 0)
        return;
    conn *c = calloc(1, sizeof *c);
    char *in = c ? malloc(APAGE_MAX_REQUEST_BYTES + 1) : NULL;
    if (!c || !in) {
        free(c);
        free(in);
        return;
    }
    c->p = p;
    c->in = in;
    uv_tcp_init(p->loop, &c->tcp);
    uv_timer_init(p->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    p->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || p->nconns > APAGE_MAX_CONNECTIONS) {
        conn_close(c);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
        else
            uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
    }
    uv_timer_start(&c->timer, on_idle, APAGE_IDLE_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- lifecycle ------------------------------------------------------------- */

static int parse_listen(const char *listen, char *host, size_t hn, int *port)
{
    const char *colon = strrchr(listen, ':');
    if (!colon)
        return -1;
    size_t n = (size_t)(colon - listen);
    if (n >= hn)
        return -1;
    memcpy(host, listen, n);
    host[n] = '\0';
    if (host[0] == '[') {
        size_t l = strlen(host);
        if (l < 2 || host[l - 1] != ']')
            return -1;
        memmove(host, host + 1, l - 2);
        host[l - 2] = '\0';
    }
    if (!host[0])
        snprintf(host, hn, "127.0.0.1");
    char *end;
    long pv = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || pv < 0 || pv > 65535)
        return -1;
    *port = (int)pv;
    return 0;
}

apage *apage_start(uv_loop_t *loop, apr_store *store, const char *listen,
                   const char *public_url, const char *secret_env, apage_decided_fn decided,
                   void *ud, char *err, size_t errlen)
{
    char host[APAGE_HOST_MAX - 3]; /* room for [v6] brackets in bound_host */
    int port;
    if (parse_listen(listen, host, sizeof host, &port) != 0) {
        snprintf(err, errlen, "approval.listen \"%s\" is not HOST:PORT", listen);
        return NULL;
    }
    struct sockaddr_storage addr;
    bool v6 = strchr(host, ':') != NULL;
    int rc = v6 ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr)
                : uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc != 0) {
        snprintf(err, errlen, "approval.listen \"%s\": the host must be an IP address", listen);
        return NULL;
    }
    apage *p = calloc(1, sizeof *p);
    if (!p || !(p->secret_env = strdup(secret_env))) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->loop = loop;
    p->store = store;
    p->decided = decided;
    p->ud = ud;
    uv_tcp_init(loop, &p->server);
    p->server.data = p;
    p->open_handles = 1;
    rc = uv_tcp_bind(&p->server, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&p->server, 64, on_connection);
    if (rc != 0) {
        snprintf(err, errlen, "cannot serve the approval page on %s: %s", listen,
                 uv_strerror(rc));
        apage_stop(p);
        return NULL;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&p->server, (struct sockaddr *)&bound, &blen);
    int bport = ntohs(v6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                         : ((struct sockaddr_in *)&bound)->sin_port);
    bool any = strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
    if (v6)
        snprintf(p->bound_host, sizeof p->bound_host, "[%s]", host);
    else
        snprintf(p->bound_host, sizeof p->bound_host, "%s", host);
    if (public_url && *public_url) {
        snprintf(p->base_url, sizeof p->base_url, "%s", public_url);
        size_t l = strlen(p->base_url);
        while (l > 0 && p->base_url[l - 1] == '/')
            p->base_url[--l] = '\0';
        const char *h = strstr(public_url, "://");
        if (h) {
            h += 3;
            const char *slash = strchr(h, '/');
            host_only(h, slash ? (size_t)(slash - h) : strlen(h), p->public_host,
                      sizeof p->public_host);
        }
    } else {
        snprintf(p->base_url, sizeof p->base_url, "http://%s:%d",
                 any ? "127.0.0.1" : p->bound_host, bport);
    }
    log_info("approval page on %s (requests at %s/approvals/<id>)", listen, p->base_url);
    return p;
}

const char *apage_base_url(const apage *p) { return p->base_url; }

bool apage_secret_configured(const apage *p)
{
    const char *v = getenv(p->secret_env);
    return v && *v;
}

static void on_server_closed(uv_handle_t *h)
{
    apage *p = h->data;
    p->open_handles--;
    maybe_free_page(p);
}

void apage_stop(apage *p)
{
    if (!p || p->stopping)
        return;
    p->stopping = true;
    for (conn *c = p->conns; c; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&p->server, on_server_closed);
}
