/* provider.h — the adapter interface every platform implements, the common
 * deployment/event model, and the generic operation and stream machinery.
 *
 * Like curl's per-protocol handler tables, each platform is one
 * `const struct provider` (providers/<name>.c) listed in providers/registry.c;
 * tools call through the table and never test which platform they talk to.
 *
 * Results cross this interface as jansson values in the shapes PRODUCT.md §3
 * defines (Deployment objects, request objects), plus prov_error for
 * failures. All callbacks run on the loop thread. */
#ifndef DEPLOY_MCP_PROVIDER_H
#define DEPLOY_MCP_PROVIDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "mcp/config.h"
#include "providers/http.h"
#include "providers/sse.h"

/* ---- normalized status --------------------------------------------- */

typedef enum prov_status {
    PROV_ST_UNKNOWN = -1,
    PROV_ST_QUEUED = 0,
    PROV_ST_BUILDING,
    PROV_ST_READY,
    PROV_ST_FAILED,
    PROV_ST_CANCELED,
} prov_status;

/* "queued" ... "canceled"; "unknown" for PROV_ST_UNKNOWN. */
const char *prov_status_name(prov_status st);
/* Parses the five normalized words; PROV_ST_UNKNOWN otherwise. */
prov_status prov_status_parse(const char *word);
/* ready, failed and canceled are terminal. */
bool prov_status_terminal(prov_status st);

/* ---- errors -------------------------------------------------------- */

#define PROV_ERR_CODE_MAX 64
#define PROV_ERR_MSG_MAX 1024

/* A failure to report to the model. `message` is written for a model to act
 * on and never contains a secret. */
typedef struct prov_error {
    char code[PROV_ERR_CODE_MAX];     /* platform code or ours ("network_error") */
    char message[PROV_ERR_MSG_MAX];
    long http_status;                 /* 0 when none */
    bool retryable;
} prov_error;

/* Fills *e (code, retryable, http_status, printf-style message). */
void prov_error_set(prov_error *e, const char *code, long http_status, bool retryable,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* ---- targets ------------------------------------------------------- */

struct provider;

/* A configured target at run time. Created by main for each config target;
 * `priv` belongs to the adapter (configure/unconfigure). */
typedef struct prov_target {
    const cfg_target *cfg;            /* name, provider, JSON object (borrowed) */
    const struct provider *ops;
    void *priv;
    http_client *http;                /* borrowed */
    uv_loop_t *loop;                  /* borrowed */
} prov_target;

/* Reads the named environment variable holding this target's secret.
 * Returns NULL when unset or empty. Never log the value. */
const char *prov_secret(const char *env_name);

/* ---- the common event model ---------------------------------------- */

typedef enum prov_event_kind {
    PROV_EV_STATUS,    /* status changed (status, provider_status, url?) */
    PROV_EV_LOG,       /* log lines */
    PROV_EV_STEP,      /* progress step (step, progress/total) */
    PROV_EV_RESOURCE,  /* an infrastructure resource changed (message) */
    PROV_EV_ERROR,     /* an error reported in-stream (error) */
} prov_event_kind;

typedef struct prov_log_line {
    const char *text;      /* valid UTF-8 (repaired by the adapter) */
    size_t len;
    const char *level;     /* "debug" | "info" | "warn" | "error" */
    const char *ts;        /* ISO-8601 or NULL */
    const char *source;    /* e.g. "build", "request", "exception"; or NULL */
} prov_log_line;

/* One event in the common model. All pointers are borrowed for the duration
 * of the callback. progress/total are < 0 when absent. */
typedef struct prov_event {
    prov_event_kind kind;
    prov_status status;              /* STATUS (and terminal events) */
    const char *provider_status;     /* the platform's own word */
    const char *url;                 /* deployment URL when known */
    double progress, total;
    const char *step;
    const char *message;             /* one-line human summary (RESOURCE, STEP, ERROR) */
    const prov_log_line *lines;      /* LOG */
    size_t nlines;
    const prov_error *error;         /* ERROR, or STATUS failed with details */
    json_t *detail;                  /* STATUS: optional object of further Deployment
                                        members (e.g. Bluelink's {"changes":…}); tools
                                        that return the deployment merge it. Borrowed */
} prov_event;

/* ---- one-shot operations ------------------------------------------- */

typedef struct prov_op prov_op;

/* Delivers the outcome of an operation: on success `result` (owned by the
 * receiver) and err == NULL; on failure result == NULL and err set. The op is
 * freed right after the callback returns. */
typedef void (*prov_result_cb)(void *ud, json_t *result, const prov_error *err);

/* Cancels an operation: no callback runs afterwards, transfers are closed. */
void prov_op_cancel(prov_op *op);

typedef struct prov_create_args {
    const char *branch, *commit_sha, *artifact, *message;
    const char *idempotency_key;       /* always set by the tool */
} prov_create_args;

typedef struct prov_list_args {
    const char *status, *environment, *cursor;
    int limit;
} prov_list_args;

/* ---- streams -------------------------------------------------------- */

enum prov_stream_kind { PROV_STREAM_EVENTS, PROV_STREAM_LOGS };

/* How a stream resumes after the upstream closes it (or from a cursor). */
enum prov_resume {
    PROV_RESUME_LAST_EVENT_ID, /* send Last-Event-ID; if the server replays from the
                                  start anyway, fall back to skipping by count */
    PROV_RESUME_REPLAY,        /* server replays everything: skip the first N events */
    PROV_RESUME_LIVE,          /* live only: reconnect, adapter de-duplicates */
};

#define PROV_STREAM_MAX_HEADERS 8
#define PROV_URL_MAX 2048
#define PROV_HEADER_MAX 1024

/* What the adapter tells the generic stream to connect to. */
typedef struct prov_stream_spec {
    char url[PROV_URL_MAX];
    char headers[PROV_STREAM_MAX_HEADERS][PROV_HEADER_MAX];  /* "Name: value" */
    int nheaders;
    enum prov_resume resume;
    bool reconnect;             /* reconnect when the server closes before the end */
    const char *ca_file;
    char first_last_event_id[SSE_MAX_ID + 1]; /* sent on the first connect if non-empty */
} prov_stream_spec;

/* Empties a spec without touching its ~11 KiB of buffers (a memset per
 * connection showed in profiles of 1 000 streams). */
static inline void prov_stream_spec_init(prov_stream_spec *spec)
{
    spec->url[0] = '\0';
    spec->nheaders = 0;
    spec->resume = PROV_RESUME_LAST_EVENT_ID;
    spec->reconnect = false;
    spec->ca_file = NULL;
    spec->first_last_event_id[0] = '\0';
}

/* Sink an adapter's parser emits common events into. */
typedef void (*prov_emit_fn)(void *sink, const prov_event *ev);

/* Result of parsing one SSE event. */
enum prov_parse_result {
    PROV_PARSE_CONTINUE = 0,   /* keep streaming */
    PROV_PARSE_END = 1,        /* the logical stream is complete (terminal) */
    PROV_PARSE_IGNORED = 2,    /* nothing relayed (keep-alive, repeat): not counted */
};

/* ---- the adapter table ---------------------------------------------- */

/* Capability bits: which tools the platform supports. */
enum {
    PROV_CAP_CREATE_PREVIEW = 1u << 0,
    PROV_CAP_REQUEST_PUBLISH = 1u << 1,
    PROV_CAP_STREAM_EVENTS = 1u << 2,
    PROV_CAP_TAIL_LOGS = 1u << 3,
    PROV_CAP_GET = 1u << 4,
    PROV_CAP_LIST = 1u << 5,
};

struct provider {
    const char *name;                 /* config word: "showly" */
    const char *display_name;         /* "Showly" */
    unsigned caps;
    /* tail_logs needs a deploymentId on this platform (build logs only). */
    bool logs_need_deployment;
    /* get/list answer from this process's own records (no platform API). */
    bool local_records_only;
    /* The platform de-duplicates creates by Idempotency-Key itself (else the
     * tool layer returns the remembered deployment for a repeated key). */
    bool native_idempotency;

    /* Validates provider-specific fields of t->cfg and sets t->priv.
     * Returns 0, or -1 with a message naming the field in err. */
    int (*configure)(prov_target *t, char *err, size_t errlen);
    /* Frees t->priv. Also called after a failed configure (priv may be
     * partly set, or NULL). */
    void (*unconfigure)(prov_target *t);

    /* True when the credentials are present in the environment; otherwise
     * false with a problem message naming the variable (never a value). */
    bool (*credentials_ok)(const prov_target *t, char *problem, size_t n);

    /* What to say when a capability is missing: the tool name and advice. */
    const char *(*unsupported_hint)(const char *tool);

    /* Operations. Each returns an op handle, or NULL after having filled
     * *err (then no callback runs). Results: Deployment objects (PRODUCT.md
     * §3) for create/get; {request:{...}} for publish; {deployments, nextCursor?}
     * for list. */
    prov_op *(*create_preview)(prov_target *t, const prov_create_args *a,
                               prov_result_cb cb, void *ud, prov_error *err);
    prov_op *(*request_publish)(prov_target *t, const char *source_id, const char *notes,
                                prov_result_cb cb, void *ud, prov_error *err);
    prov_op *(*get_deployment)(prov_target *t, const char *id,
                               prov_result_cb cb, void *ud, prov_error *err);
    prov_op *(*list_deployments)(prov_target *t, const prov_list_args *a,
                                 prov_result_cb cb, void *ud, prov_error *err);

    /* Human-gated production publish, for platforms without an approval
     * concept of their own (request_publish is NULL there). deploy-mcp keeps
     * the request and calls publish only after a person approved it on the
     * approval page.
     * prepare_publish checks that `source_id` can be promoted and describes
     * it. Result: {"plan": what publishing will do in plain words,
     * "source": {what publish needs and the page shows: url, branch,
     * commitSha, artifactDigest, uploadUuid, bundleKey, productionProject,
     * changesSummary, changes: [strings] ...}}.
     * publish performs it from that "source" object. Result: the production
     * Deployment (its id works with stream_events and get_deployment). */
    prov_op *(*prepare_publish)(prov_target *t, const char *source_id,
                                prov_result_cb cb, void *ud, prov_error *err);
    prov_op *(*publish)(prov_target *t, json_t *source,
                        prov_result_cb cb, void *ud, prov_error *err);

    /* Streams: fill the connection spec for `kind` on `id` (id may be NULL
     * for PROV_STREAM_LOGS on platforms with runtime logs). Called for every
     * connection of a stream, reconnects included (the spec is not kept), so
     * it may depend on per-stream state; an error ends the stream. */
    int (*stream_spec)(prov_target *t, enum prov_stream_kind kind, const char *id,
                       prov_stream_spec *spec, prov_error *err);
    /* Per-stream adapter state (may be NULL functions): created at open,
     * freed at close. */
    void *(*stream_state_new)(prov_target *t, enum prov_stream_kind kind);
    void (*stream_state_free)(void *state);
    /* Optional: serialize / restore the per-stream state into the cursor, so
     * a later call de-duplicates exactly where this one stopped (e.g. the
     * last snapshot seen on a live stream). save returns a malloc'd string
     * (or NULL for nothing to save); restore returns 0 or -1 (bad cursor). */
    char *(*stream_state_save)(const void *state);
    int (*stream_state_restore)(void *state, const char *saved);
    /* Translates one SSE event into common events via emit(sink, ...).
     * Returns a prov_parse_result, or -1 with *err set for a fatal in-stream
     * problem. */
    int (*stream_parse)(prov_target *t, void *state, enum prov_stream_kind kind,
                        const sse_event *ev, prov_emit_fn emit, void *sink, prov_error *err);
    /* Maps an HTTP error response of a stream connect into *err. */
    void (*map_http_error)(prov_target *t, const http_response *res, prov_error *err);
    /* Optional: called right before every connection of a stream (the first
     * and each reconnect) with its per-stream state and id, to refresh what
     * goes stale over a long stream (Bluelink signs a date that the server
     * accepts for ±300 s). On failure it leaves spec as it was. */
    void (*stream_prepare)(prov_target *t, void *state, const char *id, prov_stream_spec *spec);
    /* Optional: true when the per-stream state restored from a cursor says
     * the logical stream already ended (Mixpeek: the cursor was taken after
     * `done`). prov_stream_open then ends the stream (on_end with no error)
     * on the next loop turn without connecting: a server that replays its
     * whole history on every connection would otherwise be reconnected to
     * until the caller's deadline. */
    bool (*stream_state_complete)(const void *state);
};

/* ---- helpers for adapters (providers/provider.c) --------------------- */

/* A Deployment object (PRODUCT.md §3). Optional strings may be NULL. */
json_t *prov_deployment(const prov_target *t, const char *id, const char *environment,
                        prov_status status, const char *provider_status, const char *url,
                        const char *created_at);

#define PROV_UUID_LEN 36
/* Writes a random (version 4) UUID, lowercase, NUL-terminated. */
void prov_uuid4(char out[PROV_UUID_LEN + 1]);

/* Percent-encodes one path segment (everything but unreserved characters).
 * Returns 0, or -1 when it does not fit in n bytes. */
int prov_escape(char *out, size_t n, const char *segment);

/* Parses a JSON body from upstream, repairing invalid UTF-8 first (jansson
 * rejects it). Returns a new reference or NULL. */
json_t *prov_json_parse(const char *body, size_t len);

/* True for curl failures that retrying cannot fix (name resolution,
 * certificate problems, a malformed URL). */
bool prov_curl_permanent(int curl_code);

/* Message for a transport-level failure (status 0) into *e: network_error,
 * retryable, naming the platform and curl's reason. */
void prov_network_error(prov_error *e, const prov_target *t, const http_response *res);

/* ---- registry ------------------------------------------------------- */

/* The adapter for a config word, or NULL. */
const struct provider *prov_lookup(const char *name);
/* True for a known provider name (for cfg_load). */
bool prov_known(const char *name);
/* NULL-terminated list of all adapters. */
extern const struct provider *const prov_all[];

/* ---- generic one-shot operation helper (used by adapters) ------------ */

/* Called when an HTTP transfer of an op completes. The adapter either
 * finishes the op with prov_op_succeed/prov_op_fail or starts another
 * transfer with prov_op_http (multi-step operations). */
typedef void (*prov_op_step_fn)(prov_op *op, const http_response *res);

/* Creates an op for target t that will report to cb/ud. `state` is the
 * adapter's, freed with free_state (may be NULL) when the op ends. */
prov_op *prov_op_new(prov_target *t, prov_result_cb cb, void *ud, void *state,
                     void (*free_state)(void *));
void *prov_op_state(prov_op *op);
prov_target *prov_op_target(prov_op *op);
/* Starts an HTTP transfer for the op; `step` runs when it completes. Returns
 * 0, or -1 (op untouched: the caller finishes it). */
int prov_op_http(prov_op *op, const http_opts *opts, prov_op_step_fn step);
/* Ends the op: delivers result (stolen) / error and frees the op. */
void prov_op_succeed(prov_op *op, json_t *result);
void prov_op_fail(prov_op *op, const prov_error *err);
/* Ends the op asynchronously (next loop turn) — for ops that can answer
 * without I/O, since callbacks must never run inside the starting call. */
void prov_op_succeed_later(prov_op *op, json_t *result);
void prov_op_fail_later(prov_op *op, const prov_error *err);

/* ---- generic reconnecting SSE stream (providers/stream.c) ------------ */

typedef struct prov_stream prov_stream;

typedef struct prov_stream_callbacks {
    /* A relayable event (keep-alives and de-duplicated repeats never arrive). */
    void (*on_event)(void *ud, const prov_event *ev);
    /* The stream is over: err == NULL when the logical stream completed, else
     * the failure. The stream is dead once this returns (do not close it). */
    void (*on_end)(void *ud, const prov_error *err);
} prov_stream_callbacks;

#define PROV_STREAM_MAX_RECONNECTS 50        /* consecutive failed connects */

/* Opens a stream of `kind` on `id`, resuming after `cursor` when not NULL
 * (a value from prov_stream_cursor, possibly from an earlier call). Returns
 * NULL with *err filled (e.g. invalid cursor, unsupported). */
prov_stream *prov_stream_open(prov_target *t, enum prov_stream_kind kind, const char *id,
                              const char *cursor, const prov_stream_callbacks *cb, void *ud,
                              prov_error *err);

/* Closes the stream at once (no callbacks afterwards). */
void prov_stream_close(prov_stream *s);

/* An opaque cursor (malloc'd, caller frees) that resumes exactly after the
 * last event delivered through on_event. */
char *prov_stream_cursor(const prov_stream *s);

/* Events delivered so far (across reconnects and the cursor's history not
 * included), and reconnects performed. */
unsigned long prov_stream_events(const prov_stream *s);
unsigned prov_stream_reconnects(const prov_stream *s);

/* Pauses/resumes the upstream transfer (backpressure). */
void prov_stream_pause(prov_stream *s, bool paused);

/* The latest status seen on this logical stream (including what the cursor
 * carried): status, the platform's word (may be NULL) and URL (may be NULL).
 * Pointers are valid until the next event or close. */
prov_status prov_stream_status(const prov_stream *s, const char **provider_status,
                               const char **url);

#endif
