/* provider.c — shared pieces of the adapter interface: normalized status
 * words, errors, secrets lookup and the one-shot operation machinery. */
#include "providers/provider.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/log.h"
#include "providers/utf8.h"

/* curl failures that retrying will not fix: certificate problems. */
static bool tls_failure(int curl_code)
{
    return curl_code == 60 /* peer certificate */ || curl_code == 58 /* client cert */ ||
           curl_code == 77 /* CA file */ || curl_code == 83 /* issuer */ ||
           curl_code == 90 /* pinned key */;
}

static const char *const status_names[] = {"queued", "building", "ready", "failed", "canceled"};

const char *prov_status_name(prov_status st)
{
    if (st < PROV_ST_QUEUED || st > PROV_ST_CANCELED)
        return "unknown";
    return status_names[st];
}

prov_status prov_status_parse(const char *word)
{
    for (int i = 0; word && i <= PROV_ST_CANCELED; i++)
        if (strcmp(word, status_names[i]) == 0)
            return (prov_status)i;
    return PROV_ST_UNKNOWN;
}

bool prov_curl_permanent(int curl_code)
{
    return tls_failure(curl_code) || curl_code == 6 /* host not resolved */ ||
           curl_code == 1 /* unsupported protocol */ || curl_code == 3 /* malformed URL */;
}

bool prov_status_terminal(prov_status st)
{
    return st == PROV_ST_READY || st == PROV_ST_FAILED || st == PROV_ST_CANCELED;
}

void prov_error_set(prov_error *e, const char *code, long http_status, bool retryable,
                    const char *fmt, ...)
{
    snprintf(e->code, sizeof e->code, "%s", code ? code : "error");
    e->http_status = http_status;
    e->retryable = retryable;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    /* A cut inside a character would make the text invalid UTF-8, and
     * jansson would drop the whole field. */
    utf8_trim_cstr(e->code);
    utf8_trim_cstr(e->message);
}

const char *prov_secret(const char *env_name)
{
    if (!env_name || !*env_name)
        return NULL;
    const char *v = getenv(env_name);
    return v && *v ? v : NULL;
}

/* ---- one-shot operations ------------------------------------------------ */

struct prov_op {
    prov_target *t;
    prov_result_cb cb;
    void *ud;
    void *state;
    void (*free_state)(void *);
    http_req *req;
    prov_op_step_fn step;
    uv_timer_t later;          /* asynchronous completion (no allocation: it cannot fail) */
    bool later_armed;          /* `later` is initialized: the op is freed in its close cb */
    json_t *later_result;
    prov_error later_err;
    bool later_failed;
};

prov_op *prov_op_new(prov_target *t, prov_result_cb cb, void *ud, void *state,
                     void (*free_state)(void *))
{
    prov_op *op = calloc(1, sizeof *op);
    if (!op) {
        if (free_state)
            free_state(state);
        return NULL;
    }
    op->t = t;
    op->cb = cb;
    op->ud = ud;
    op->state = state;
    op->free_state = free_state;
    return op;
}

void *prov_op_state(prov_op *op) { return op->state; }
prov_target *prov_op_target(prov_op *op) { return op->t; }

static void on_later_closed(uv_handle_t *h) { free(h->data); }

static void op_free(prov_op *op)
{
    if (op->req)
        http_cancel(op->req);
    json_decref(op->later_result);
    op->later_result = NULL;
    if (op->free_state)
        op->free_state(op->state);
    op->free_state = NULL;
    if (op->later_armed)
        uv_close((uv_handle_t *)&op->later, on_later_closed); /* frees op */
    else
        free(op);
}

void prov_op_cancel(prov_op *op)
{
    if (op)
        op_free(op);
}

static void op_http_done(void *ud, const http_response *res)
{
    prov_op *op = ud;
    op->req = NULL; /* the client frees it after this callback */
    if (res->curl_code != 0 && !res->truncated && res->status != 0) {
        /* The connection broke after the status line: the body is partial,
         * so this is a network failure, not the platform's answer. */
        http_response broken = *res;
        broken.status = 0;
        op->step(op, &broken);
        return;
    }
    op->step(op, res);
}

int prov_op_http(prov_op *op, const http_opts *opts, prov_op_step_fn step)
{
    static const http_callbacks cbs = { NULL, NULL, op_http_done };
    op->step = step;
    op->req = http_start(op->t->http, opts, &cbs, op);
    return op->req ? 0 : -1;
}

void prov_op_succeed(prov_op *op, json_t *result)
{
    prov_result_cb cb = op->cb;
    void *ud = op->ud;
    op_free(op);
    cb(ud, result, NULL);
}

void prov_op_fail(prov_op *op, const prov_error *err)
{
    prov_error copy = *err; /* err may live in the op's state */
    prov_result_cb cb = op->cb;
    void *ud = op->ud;
    op_free(op);
    cb(ud, NULL, &copy);
}

static void on_later(uv_timer_t *timer)
{
    prov_op *op = timer->data;
    if (op->later_failed) {
        prov_op_fail(op, &op->later_err);
    } else {
        json_t *r = op->later_result;
        op->later_result = NULL;
        prov_op_succeed(op, r);
    }
}

/* Completes the op on the next loop turn: callbacks never run inside the
 * call that started the op. */
static void schedule_later(prov_op *op)
{
    uv_timer_init(op->t->loop, &op->later);
    op->later.data = op;
    op->later_armed = true;
    uv_timer_start(&op->later, on_later, 0, 0);
}

void prov_op_succeed_later(prov_op *op, json_t *result)
{
    op->later_result = result;
    op->later_failed = false;
    schedule_later(op);
}

void prov_op_fail_later(prov_op *op, const prov_error *err)
{
    op->later_err = *err;
    op->later_failed = true;
    schedule_later(op);
}

/* ---- adapter helpers ---------------------------------------------------- */

json_t *prov_deployment(const prov_target *t, const char *id, const char *environment,
                        prov_status status, const char *provider_status, const char *url,
                        const char *created_at)
{
    json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", id ? id : "",
                          "target", t->cfg->name, "provider", t->ops->name,
                          "environment", environment ? environment : "preview",
                          "status", prov_status_name(status == PROV_ST_UNKNOWN ? PROV_ST_QUEUED
                                                                               : status),
                          "providerStatus", provider_status ? provider_status : "unknown");
    if (d && url && *url)
        json_object_set_new(d, "url", json_string(url));
    if (d && created_at && *created_at)
        json_object_set_new(d, "createdAt", json_string(created_at));
    return d;
}

int prov_escape(char *out, size_t n, const char *seg)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)seg; *p; p++) {
        bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
                     *p == '~';
        if (o + (plain ? 1 : 3) >= n)
            return -1;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    if (o >= n)
        return -1;
    out[o] = '\0';
    return 0;
}

/* True when the text contains a "\\u" escape (only then can a lone
 * surrogate be why parsing failed). */
static bool has_u_escape(const char *s, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++)
        if (s[i] == '\\' && s[i + 1] == 'u')
            return true;
    return false;
}

/* Rewrites unpaired surrogate escapes (\uD800-\uDFFF without a partner,
 * as JavaScript's JSON.stringify writes for a string cut mid-emoji) to
 * \uFFFD in place: jansson rejects them and the whole event would be lost. */
static void fix_lone_surrogates(char *s, size_t len)
{
    for (size_t i = 0; i + 6 <= len; i++) {
        if (s[i] == '\\' && s[i + 1] == '\\') {
            i++; /* an escaped backslash: skip both */
            continue;
        }
        if (s[i] != '\\' || s[i + 1] != 'u')
            continue;
        char hex[5] = {s[i + 2], s[i + 3], s[i + 4], s[i + 5], 0};
        char *end;
        unsigned long cp = strtoul(hex, &end, 16);
        if (*end || cp < 0xD800 || cp > 0xDFFF) {
            i += 5;
            continue;
        }
        bool paired = false;
        if (cp <= 0xDBFF && i + 12 <= len && s[i + 6] == '\\' && s[i + 7] == 'u') {
            char lo[5] = {s[i + 8], s[i + 9], s[i + 10], s[i + 11], 0};
            unsigned long cl = strtoul(lo, &end, 16);
            paired = !*end && cl >= 0xDC00 && cl <= 0xDFFF;
        }
        if (paired) {
            i += 11;
        } else {
            memcpy(s + i + 2, "FFFD", 4);
            i += 5;
        }
    }
}

json_t *prov_json_parse(const char *body, size_t len)
{
    if (!body)
        return NULL;
    if (utf8_valid(body, len)) {
        json_t *j = json_loadb(body, len, JSON_ALLOW_NUL, NULL);
        if (j || !has_u_escape(body, len))
            return j;
    }
    size_t fixed_len = 0;
    char *fixed = utf8_repair(body, len, &fixed_len);
    if (!fixed)
        return NULL;
    json_t *j = json_loadb(fixed, fixed_len, JSON_ALLOW_NUL, NULL);
    if (!j) {
        fix_lone_surrogates(fixed, fixed_len);
        j = json_loadb(fixed, fixed_len, JSON_ALLOW_NUL, NULL);
    }
    free(fixed);
    return j;
}

void prov_network_error(prov_error *e, const prov_target *t, const http_response *res)
{
    if (res->lib_missing) {
        /* Nothing went on the network: no baseUrl hint, and retrying as is
         * will not help until libcurl is installed. */
        prov_error_set(e, "internal_error", 0, false, "cannot reach %s: %s",
                       t->ops->display_name, res->error ? res->error : "libcurl is missing");
        return;
    }
    if (tls_failure(res->curl_code)) {
        prov_error_set(e, "tls_error", 0, false,
                       "could not establish a trusted TLS connection to %s%s%s; if it uses a "
                       "private CA, set caFile on the target to that CA's PEM file (the "
                       "certificate is never accepted unverified)",
                       t->ops->display_name, res->error && *res->error ? ": " : "",
                       res->error ? res->error : "");
        return;
    }
    prov_error_set(e, "network_error", 0, true,
                   "could not reach %s%s%s; check the target's baseUrl and the network, "
                   "then retry", t->ops->display_name, res->error && *res->error ? ": " : "",
                   res->error ? res->error : "");
}

void prov_uuid4(char out[PROV_UUID_LEN + 1])
{
    unsigned char r[16];
    if (uv_random(NULL, NULL, r, sizeof r, 0, NULL) != 0) {
        /* getrandom failing is exotic; fall back to a weaker mix rather
         * than aborting a publish request. */
        uint64_t x = (uint64_t)uv_hrtime() ^ (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < sizeof r; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            r[i] = (unsigned char)x;
        }
    }
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[r[i] >> 4];
        out[o++] = hex[r[i] & 15];
    }
    out[o] = '\0';
}
