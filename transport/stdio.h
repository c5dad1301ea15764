/* stdio.h — MCP over stdin/stdout: newline-delimited JSON-RPC.
 *
 * Reads stdin without blocking the loop (pipe or tty through a uv stream; a
 * regular file through uv_fs_read, since uv_pipe_open aborts on files), splits
 * lines with a hard cap (an oversized line is answered with an error and
 * skipped), and hands each line to one MCP session: at most 16 per loop turn,
 * so that a burst of requests read at once does not hold up the rest of the
 * loop (stdin is not read again until the read's last message is handled, so
 * order is kept and end of input comes after it). Outgoing messages from one
 * loop turn are batched into a single write. Nothing but MCP goes to stdout. */
#ifndef DEPLOY_MCP_STDIO_H
#define DEPLOY_MCP_STDIO_H

#include <stddef.h>
#include <uv.h>

struct mcp_server;
typedef struct stdio_transport stdio_transport;

/* Caps bytes queued for stdout; beyond it further messages are still queued
 * (nothing is dropped) but a warning is logged once per episode. */
#define STDIO_OUT_HIGH_WATER (64u << 20)

/* Starts reading stdin and creates the session. on_eof runs once when stdin
 * ends or fails (the server then shuts down). Returns NULL on failure. */
stdio_transport *stdio_start(struct mcp_server *srv, void (*on_eof)(void *ud), void *ud);

/* Stops reading, closes the session (cancelling its requests; no responses
 * for them), flushes what is queued for stdout, shuts stdout down and closes
 * the handles; frees itself in the close callbacks. */
void stdio_stop(stdio_transport *t);

/* Bytes queued or in flight to stdout. */
size_t stdio_pending(const stdio_transport *t);

#endif
