/* approval.h — production publish requests that deploy-mcp keeps itself, for
 * platforms without an approval concept (BigCommerce, Mixpeek, Bluelink).
 *
 * A request is created by request_publish and decided only by a human on the
 * approval page (never by a tool). Every change is appended to a journal,
 * one JSON object per line, fsync'd before the change is acted on; the
 * journal is replayed at start-up, so requests and decisions survive a
 * restart, and it doubles as the audit log (who decided, when, from where).
 * A torn last line (a crash mid-write) is ignored and cut off on open.
 *
 * Writes go through libuv's thread pool (uv_fs_write + uv_fs_fsync), one at a
 * time and in order, so the loop never blocks on the disk. Opening and
 * replaying happen once at start-up, before the loop runs. */
#ifndef DEPLOY_MCP_APPROVAL_H
#define DEPLOY_MCP_APPROVAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define APR_ID_LEN 36                       /* "apr_" + 32 hex digits */
#define APR_DEFAULT_TTL_MS (24LL * 3600 * 1000)
#define APR_JOURNAL_NAME "approvals.jsonl"
#define APR_MAX_JOURNAL_BYTES (64u << 20)   /* larger journals are refused at open */
#define APR_MAX_LINE_BYTES (1u << 20)
#define APR_MAX_REQUESTS 100000

typedef enum apr_status {
    APR_PENDING = 0,      /* "pending_approval" */
    APR_APPROVED,
    APR_PUBLISHING,
    APR_PUBLISHED,
    APR_FAILED,
    APR_REJECTED,
    APR_EXPIRED,
} apr_status;

/* "pending_approval", "approved", ... */
const char *apr_status_name(apr_status st);
/* True for published, failed, rejected and expired. */
bool apr_status_final(apr_status st);

typedef struct apr_request {
    char id[APR_ID_LEN + 1];
    apr_status status;
    char *target, *provider;
    char *source_id;          /* the preview deployment being promoted */
    char *plan;               /* what publishing will do, in plain words */
    char *notes;              /* the agent's notes (may be NULL) */
    json_t *source;           /* adapter details: url, branch/commit or digest, bundle key,
                                 upload uuid, staged changes ... (owned) */
    int64_t created_ms, expires_ms;
    int64_t decided_ms;       /* 0 while pending */
    char *decided_by;         /* approver's name as typed on the page */
    char *decided_from;       /* remote address */
    char *decision_note;
    char *production_id;      /* production deployment once publishing */
    char *error;              /* why publishing failed */
    char csrf[33];            /* per-request form token (hex); not journaled */
    bool durable;             /* the create record reached the disk */
} apr_request;

typedef struct apr_store apr_store;

/* Called when an append is durable (status 0) or failed (negative errno). */
typedef void (*apr_done_fn)(void *ud, int status);

/* Opens (creating if needed, mode 0700/0600) the journal in `dir`, replays
 * it, and cuts off a torn last line. `dir` NULL → $XDG_STATE_HOME/deploy-mcp
 * (default ~/.local/state/deploy-mcp). Returns NULL with a message in err. */
apr_store *apr_store_open(uv_loop_t *loop, const char *dir, char *err, size_t errlen);

/* Closes the store: appends still queued are written first (the loop must
 * run afterwards), then the file is closed and everything freed. */
void apr_store_close(apr_store *st);

/* Creates a pending request and journals it. Strings are copied; `source`
 * is borrowed (deep-copied). `done` runs when the record is durable; the
 * returned request is visible at once (the page refuses to decide it until
 * it is durable). ttl_ms <= 0 → APR_DEFAULT_TTL_MS. */
apr_request *apr_create(apr_store *st, const char *target, const char *provider,
                        const char *source_id, const char *plan, const char *notes,
                        json_t *source, int64_t ttl_ms, apr_done_fn done, void *ud);

/* Looks up a request; marks it expired (and journals that) when its time
 * is up. NULL when unknown. */
apr_request *apr_get(apr_store *st, const char *id);

/* Records a human decision on a pending request. Returns 0, or -1 with a
 * reason in err (unknown, already decided, expired, not yet durable). */
int apr_decide(apr_store *st, apr_request *r, bool approve, const char *by, const char *from,
               const char *note, apr_done_fn done, void *ud, char *err, size_t errlen);

/* Moves an approved request through publishing → published | failed. */
void apr_set_status(apr_store *st, apr_request *r, apr_status status,
                    const char *production_id, const char *error, apr_done_fn done, void *ud);

/* Requests in creation order: call with *cursor = 0, returns NULL at the end. */
apr_request *apr_next(apr_store *st, size_t *cursor);

/* The path of the journal file. */
const char *apr_store_path(const apr_store *st);

/* JSON view of a request for tool results (new reference; no csrf). */
json_t *apr_request_json(const apr_request *r);

/* Milliseconds since the epoch (wall clock). Tests may override the clock. */
int64_t apr_now_ms(void);
void apr_set_clock(int64_t (*now_ms)(void));

#endif
