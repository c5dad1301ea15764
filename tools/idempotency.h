/* idempotency.h — idempotency keys for create_preview (PRODUCT.md §3).
 *
 * Two in-process tables:
 *
 *  - derived keys: when the caller gives no idempotencyKey, the key is
 *    derived from a fingerprint of the call (target, branch, commitSha,
 *    artifact, message) and a random salt. The same fingerprint gets the same
 *    key for IDEM_WINDOW_MS after it was first derived; afterwards a new salt,
 *    hence a new key. The salt keeps keys unpredictable across windows and
 *    processes.
 *
 *  - remembered deployments: for platforms without native idempotency, the
 *    tool layer itself answers a repeated key with the deployment the first
 *    call created. A key in use by a create that has not answered yet is
 *    "pending": identical calls wait for it instead of creating twice.
 *
 * Everything runs on the loop thread; nothing here does I/O. */
#ifndef DEPLOY_MCP_TOOLS_IDEMPOTENCY_H
#define DEPLOY_MCP_TOOLS_IDEMPOTENCY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "providers/provider.h"
#include "tools/sha256.h"

#define IDEM_WINDOW_MS    (15ull * 60 * 1000)       /* derived key reuse window */
#define IDEM_REMEMBER_MS  (24ull * 60 * 60 * 1000)  /* remembered deployments */
#define IDEM_MAX_RECORDS  4096                      /* per table; oldest evicted */
#define IDEM_KEY_MAX      255                       /* caller key length cap */
#define IDEM_UUID_LEN     36
#define IDEM_FP_LEN       TOOL_SHA256_LEN

/* Milliseconds on a monotonic clock. Tests inject their own. */
typedef uint64_t (*idem_clock_fn)(void);
/* Replaces the clock; NULL restores the default (uv_hrtime). */
void idem_set_clock(idem_clock_fn fn);

/* The arguments that make two create_preview calls "identical". NULL and ""
 * are different values. */
typedef struct idem_fields {
    const char *target, *branch, *commit_sha, *artifact, *message;
} idem_fields;

/* SHA-256 over the length-prefixed fields. */
void idem_fingerprint(const idem_fields *f, unsigned char fp[IDEM_FP_LEN]);

/* True for a usable caller key: 1..IDEM_KEY_MAX visible ASCII characters
 * (0x21..0x7e), which is what an HTTP header value can carry unchanged. */
bool idem_key_valid(const char *key);

/* Writes the key for a call with fingerprint fp into out (UUID-shaped,
 * 8-4-4-4-12 lowercase hex, version-4/variant bits set so that platforms
 * that insist on a UUID accept it). Returns 0, or -1 when no random salt
 * could be obtained. */
int idem_derive_key(const unsigned char fp[IDEM_FP_LEN], char out[IDEM_UUID_LEN + 1]);

/* The key a call uses: the caller's (when not NULL; copied as is — validate
 * it first with idem_key_valid) or a derived one. out must hold
 * IDEM_KEY_MAX + 1 bytes. Returns 0 or -1 as idem_derive_key. */
int idem_choose_key(const char *caller_key, const unsigned char fp[IDEM_FP_LEN],
                    char out[IDEM_KEY_MAX + 1]);

/* ---- remembered deployments ------------------------------------------ */

enum idem_claim_result {
    IDEM_CLAIM_NEW,       /* no record: the caller now owns a pending one and must
                             call idem_resolve exactly once */
    IDEM_CLAIM_DONE,      /* *deployment = a copy of the remembered deployment */
    IDEM_CLAIM_PENDING,   /* another call is creating it: *waiter registered */
    IDEM_CLAIM_CONFLICT,  /* the key was used with different arguments */
    IDEM_CLAIM_ERROR,     /* out of memory */
};

typedef struct idem_waiter idem_waiter;

/* A waiter's outcome: the deployment (new reference, owned by the callee) or
 * the error the creating call ended with. Runs inside idem_resolve. */
typedef void (*idem_wait_fn)(void *ud, json_t *deployment, const prov_error *err);

/* Looks up (target, key). fp is the call's fingerprint, used to detect a key
 * reused with different arguments. */
enum idem_claim_result idem_claim(const char *target, const char *key,
                                  const unsigned char fp[IDEM_FP_LEN], json_t **deployment,
                                  idem_wait_fn cb, void *ud, idem_waiter **waiter);

/* Ends a pending record created by IDEM_CLAIM_NEW: with a deployment
 * (borrowed; a copy is remembered and each waiter gets its own copy) or with
 * err (the record is dropped so a later call may try again; waiters get err). */
void idem_resolve(const char *target, const char *key, json_t *deployment,
                  const prov_error *err);

/* Stops waiting (the waiting request was cancelled). No callback afterwards. */
void idem_waiter_cancel(idem_waiter *w);

/* Frees both tables. Only at exit, once no create_preview call is running
 * (waiter handles die with their records). */
void idem_cleanup(void);

#endif
