/* sse.h — incremental parser for the WHATWG "text/event-stream" format.
 *
 * Feed it response body bytes in chunks of any size; it calls back once per
 * dispatched event. Rules (HTML Living Standard, "event stream
 * interpretation"): lines end at CRLF, LF or CR (a CRLF split across two
 * chunks counts once); one leading UTF-8 BOM is stripped; a blank line
 * dispatches; lines starting with ':' are comments (counted, e.g. keep-alives);
 * the field name is the text before the first ':', and one leading space of the
 * value is removed; "data" lines are joined with '\n'; "id" values containing
 * NUL are ignored, otherwise they set the last event id, which persists across
 * events (and across sse_reset); "retry" is honoured only if all ASCII digits;
 * an event whose data buffer is empty is not dispatched (but its id still
 * updates the last event id); an unterminated event at end of stream is
 * dropped (there is no "finish" call that dispatches it).
 *
 * Memory: the parser owns one line buffer and one data buffer, both capped,
 * and small buffers for the event type and the ids, allocated when a field
 * needs them and grown to its length (capped at SSE_MAX_TYPE / SSE_MAX_ID):
 * a parser that saw no id or type holds none of them.
 * A line longer than max_line, or an event whose data exceeds max_event, is
 * discarded whole (the rest of that line is skipped and the event being built
 * is dropped); the parser counts it in `oversized` and carries on with the next
 * line, so the stream can continue. Complete lines that lie in one chunk are
 * parsed in place; only partial lines are copied. */
#ifndef DEPLOY_MCP_SSE_H
#define DEPLOY_MCP_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SSE_DEFAULT_MAX_LINE  (1u << 20)   /* 1 MiB per line */
#define SSE_DEFAULT_MAX_EVENT (8u << 20)   /* 8 MiB of data per event */
#define SSE_MAX_ID 1024                    /* longer ids are ignored */
#define SSE_MAX_TYPE 256                   /* longer event types are truncated */

/* One dispatched event. Every pointer is valid only during the callback.
 * Strings are NUL-terminated; lengths exclude the NUL. `data` may contain
 * embedded '\n'. `type` is "message" when the event had no "event" field.
 * `id` is the parser's last event id after this event (may be ""). */
typedef struct sse_event {
    const char *type;
    size_t type_len;
    const char *data;
    size_t data_len;
    const char *id;
    size_t id_len;
} sse_event;

/* Return 0 to continue, non-zero to stop: sse_feed then returns SSE_ESTOPPED
 * immediately without looking at the rest of the chunk. */
typedef int (*sse_event_cb)(void *ud, const sse_event *ev);

enum {
    SSE_OK = 0,
    SSE_ESTOPPED = -1, /* the callback asked to stop */
    SSE_ENOMEM = -2,
};

typedef struct sse_parser {
    /* read-only for callers */
    uint64_t events;      /* events dispatched */
    uint64_t comments;    /* comment lines seen (keep-alives) */
    uint64_t oversized;   /* lines/events discarded for exceeding a cap */
    long retry_ms;        /* last valid "retry" value, or -1 */
    /* private */
    sse_event_cb cb;
    void *ud;
    size_t max_line, max_event;
    char *line; size_t line_len, line_cap;
    char *data; size_t data_len, data_cap;
    char *type; size_t type_len, type_cap;               /* of the event being built */
    char *id; size_t id_len, id_cap;                     /* last event id; NULL = "" */
    char *pending_id; size_t pending_id_len, pending_id_cap; bool id_set;
    bool skipping_line;   /* discarding the remainder of an oversized line */
    bool event_broken;    /* current event is being dropped (oversized) */
    bool last_was_cr;     /* previous chunk ended in CR: skip a leading LF */
    bool bom_checked;
    unsigned char bom_seen;
} sse_parser;

/* Initialises *p. max_line / max_event of 0 take the defaults above.
 * Allocates nothing until the first feed. */
void sse_init(sse_parser *p, size_t max_line, size_t max_event, sse_event_cb cb, void *ud);

/* Parses `len` bytes. Returns SSE_OK, SSE_ESTOPPED or SSE_ENOMEM. The buffer
 * is not retained after the call. */
int sse_feed(sse_parser *p, const char *buf, size_t len);

/* Prepares for a new connection of the same logical stream: drops partial
 * line and event state and re-arms BOM stripping, but keeps the last event id
 * (the value to send as Last-Event-ID) and the counters. */
void sse_reset(sse_parser *p);

/* The last event id ("" when none). Valid until the next feed/reset/free. */
const char *sse_last_id(const sse_parser *p);

/* Sets the last event id (e.g. when resuming from a caller's cursor). An id
 * over SSE_MAX_ID is ignored, like an "id" field. Returns SSE_OK, or
 * SSE_ENOMEM (the id is then unchanged). */
int sse_set_last_id(sse_parser *p, const char *id);

/* Frees the buffers. *p may be re-initialised with sse_init afterwards. */
void sse_free(sse_parser *p);

#endif
