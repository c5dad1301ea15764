/* idempotency.c — derived keys and remembered deployments (see the header).
 *
 * Both tables are plain linked lists: they hold at most IDEM_MAX_RECORDS
 * entries and are consulted once per create_preview call, which is dwarfed
 * by the upstream round trip; a hash table would buy nothing measurable. */
#include "tools/idempotency.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define IDEM_SALT_LEN 16

typedef struct idem_derived {
    struct idem_derived *next;
    unsigned char fp[IDEM_FP_LEN];
    uint64_t created_ms;
    char key[IDEM_UUID_LEN + 1];
} idem_derived;

struct idem_waiter {
    idem_waiter *prev, *next;
    struct idem_record *rec;
    idem_wait_fn cb;
    void *ud;
};

typedef struct idem_record {
    struct idem_record *next;
    char *target, *key;
    unsigned char fp[IDEM_FP_LEN];
    uint64_t created_ms;
    bool pending;
    json_t *deployment;          /* when resolved */
    idem_waiter *waiters;        /* while pending */
} idem_record;

static idem_derived *derived_head;
static size_t derived_count;
static idem_record *record_head;
static size_t record_count;

static uint64_t default_clock(void) { return uv_hrtime() / 1000000u; }
static idem_clock_fn now_ms = default_clock;

void idem_set_clock(idem_clock_fn fn) { now_ms = fn ? fn : default_clock; }

/* ---- keys --------------------------------------------------------------- */

static void hash_field(tool_sha256_ctx *c, const char *s)
{
    /* Presence byte and length prefix: ("ab","c") and ("a","bc") differ, and
     * an absent field differs from an empty one. */
    unsigned char present = s != NULL;
    uint64_t len = s ? strlen(s) : 0;
    unsigned char len_be[8];
    for (int i = 0; i < 8; i++)
        len_be[i] = (unsigned char)(len >> (56 - 8 * i));
    tool_sha256_update(c, &present, 1);
    tool_sha256_update(c, len_be, sizeof len_be);
    if (s)
        tool_sha256_update(c, s, (size_t)len);
}

void idem_fingerprint(const idem_fields *f, unsigned char fp[IDEM_FP_LEN])
{
    tool_sha256_ctx c;
    tool_sha256_init(&c);
    tool_sha256_update(&c, "deploy-mcp/create_preview/v1", 28);
    hash_field(&c, f->target);
    hash_field(&c, f->branch);
    hash_field(&c, f->commit_sha);
    hash_field(&c, f->artifact);
    hash_field(&c, f->message);
    tool_sha256_final(&c, fp);
}

bool idem_key_valid(const char *key)
{
    if (!key || !*key)
        return false;
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++, n++)
        if (*p < 0x21 || *p > 0x7e || n >= IDEM_KEY_MAX)
            return false;
    return true;
}

static void format_uuid(const unsigned char d[16], char out[IDEM_UUID_LEN + 1])
{
    unsigned char b[16];
    memcpy(b, d, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);   /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
    snprintf(out, IDEM_UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

static void derived_prune(uint64_t now)
{
    for (idem_derived **pp = &derived_head; *pp;) {
        idem_derived *d = *pp;
        if (now - d->created_ms >= IDEM_WINDOW_MS) {
            *pp = d->next;
            free(d);
            derived_count--;
        } else {
            pp = &d->next;
        }
    }
}

static void derived_evict_oldest(void)
{
    idem_derived **oldest = NULL;
    for (idem_derived **pp = &derived_head; *pp; pp = &(*pp)->next)
        if (!oldest || (*pp)->created_ms < (*oldest)->created_ms)
            oldest = pp;
    if (oldest) {
        idem_derived *d = *oldest;
        *oldest = d->next;
        free(d);
        derived_count--;
    }
}

int idem_derive_key(const unsigned char fp[IDEM_FP_LEN], char out[IDEM_UUID_LEN + 1])
{
    uint64_t now = now_ms();
    derived_prune(now);
    for (idem_derived *d = derived_head; d; d = d->next)
        if (memcmp(d->fp, fp, IDEM_FP_LEN) == 0) {
            memcpy(out, d->key, IDEM_UUID_LEN + 1);
            return 0;
        }
    unsigned char salt[IDEM_SALT_LEN];
    if (uv_random(NULL, NULL, salt, sizeof salt, 0, NULL) != 0)
        return -1;
    unsigned char digest[TOOL_SHA256_LEN];
    tool_sha256_ctx c;
    tool_sha256_init(&c);
    tool_sha256_update(&c, salt, sizeof salt);
    tool_sha256_update(&c, fp, IDEM_FP_LEN);
    tool_sha256_final(&c, digest);
    idem_derived *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    memcpy(d->fp, fp, IDEM_FP_LEN);
    d->created_ms = now;
    format_uuid(digest, d->key);
    if (derived_count >= IDEM_MAX_RECORDS)
        derived_evict_oldest();
    d->next = derived_head;
    derived_head = d;
    derived_count++;
    memcpy(out, d->key, IDEM_UUID_LEN + 1);
    return 0;
}

int idem_choose_key(const char *caller_key, const unsigned char fp[IDEM_FP_LEN],
                    char out[IDEM_KEY_MAX + 1])
{
    if (caller_key) {
        snprintf(out, IDEM_KEY_MAX + 1, "%s", caller_key);
        return 0;
    }
    return idem_derive_key(fp, out);
}

/* ---- remembered deployments ------------------------------------------- */

static void record_free(idem_record *r)
{
    for (idem_waiter *w = r->waiters, *next; w; w = next) {
        next = w->next;
        free(w);
    }
    json_decref(r->deployment);
    free(r->target);
    free(r->key);
    free(r);
}

static void records_prune(uint64_t now)
{
    for (idem_record **pp = &record_head; *pp;) {
        idem_record *r = *pp;
        if (!r->pending && now - r->created_ms >= IDEM_REMEMBER_MS) {
            *pp = r->next;
            record_free(r);
            record_count--;
        } else {
            pp = &r->next;
        }
    }
}

static void records_evict_oldest(void)
{
    idem_record **oldest = NULL;
    for (idem_record **pp = &record_head; *pp; pp = &(*pp)->next)
        if (!(*pp)->pending && (!oldest || (*pp)->created_ms < (*oldest)->created_ms))
            oldest = pp;
    if (oldest) {
        idem_record *r = *oldest;
        *oldest = r->next;
        record_free(r);
        record_count--;
    }
}

static idem_record **record_find(const char *target, const char *key)
{
    for (idem_record **pp = &record_head; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->target, target) == 0 && strcmp((*pp)->key, key) == 0)
            return pp;
    return NULL;
}

enum idem_claim_result idem_claim(const char *target, const char *key,
                                  const unsigned char fp[IDEM_FP_LEN], json_t **deployment,
                                  idem_wait_fn cb, void *ud, idem_waiter **waiter)
{
    uint64_t now = now_ms();
    records_prune(now);
    *deployment = NULL;
    *waiter = NULL;
    idem_record **pp = record_find(target, key);
    if (pp) {
        idem_record *r = *pp;
        if (memcmp(r->fp, fp, IDEM_FP_LEN) != 0)
            return IDEM_CLAIM_CONFLICT;
        if (!r->pending) {
            *deployment = json_deep_copy(r->deployment);
            return *deployment ? IDEM_CLAIM_DONE : IDEM_CLAIM_ERROR;
        }
        idem_waiter *w = calloc(1, sizeof *w);
        if (!w)
            return IDEM_CLAIM_ERROR;
        w->rec = r;
        w->cb = cb;
        w->ud = ud;
        w->next = r->waiters;
        if (r->waiters)
            r->waiters->prev = w;
        r->waiters = w;
        *waiter = w;
        return IDEM_CLAIM_PENDING;
    }
    idem_record *r = calloc(1, sizeof *r);
    if (r) {
        r->target = strdup(target);
        r->key = strdup(key);
    }
    if (!r || !r->target || !r->key) {
        if (r)
            record_free(r);
        return IDEM_CLAIM_ERROR;
    }
    memcpy(r->fp, fp, IDEM_FP_LEN);
    r->created_ms = now;
    r->pending = true;
    if (record_count >= IDEM_MAX_RECORDS)
        records_evict_oldest();
    r->next = record_head;
    record_head = r;
    record_count++;
    return IDEM_CLAIM_NEW;
}

void idem_resolve(const char *target, const char *key, json_t *deployment,
                  const prov_error *err)
{
    idem_record **pp = record_find(target, key);
    if (!pp || !(*pp)->pending)
        return;
    idem_record *r = *pp;
    /* Detach the waiters first: their callbacks may start new calls that
     * look this key up again. */
    idem_waiter *waiters = r->waiters;
    r->waiters = NULL;
    json_t *copy = deployment ? json_deep_copy(deployment) : NULL;
    prov_error oom;
    prov_error_set(&oom, "internal_error", 0, true, "out of memory");
    if (deployment && !copy)
        err = &oom;
    if (copy) {
        r->pending = false;
        r->deployment = copy;
        r->created_ms = now_ms();
    } else {
        *pp = r->next;
        record_free(r);
        record_count--;
    }
    for (idem_waiter *w = waiters, *next; w; w = next) {
        next = w->next;
        json_t *mine = copy ? json_deep_copy(copy) : NULL;
        if (copy && !mine)
            w->cb(w->ud, NULL, &oom);
        else
            w->cb(w->ud, mine, copy ? NULL : err);
        free(w);
    }
}

void idem_waiter_cancel(idem_waiter *w)
{
    if (!w)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        w->rec->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    free(w);
}

void idem_cleanup(void)
{
    while (derived_head) {
        idem_derived *d = derived_head;
        derived_head = d->next;
        free(d);
    }
    derived_count = 0;
    while (record_head) {
        idem_record *r = record_head;
        record_head = r->next;
        record_free(r);
    }
    record_count = 0;
}
