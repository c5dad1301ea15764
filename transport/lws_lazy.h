/* lws_lazy.h — libwebsockets, loaded with dlopen when --listen starts.
 *
 * Only the --listen transports (transport/listener.c, http.c, ws.c) use
 * libwebsockets, and linking it maps libssl, libcrypto and libcap into every
 * start of the server (bench/RESULTS.md: ~165 page faults, 6 ms of CPU and
 * 1.5 MB of RSS). So the program links only its headers: lws_lazy_load()
 * dlopens LWS_LAZY_SONAME and fills a table with the functions the
 * transports use; main calls it before listener_start and exits with its
 * message when it fails.
 *
 * The transport files include this header: after <libwebsockets.h> it maps
 * every lws function they call onto the table (lws_write becomes
 * lws_lazy.write, ...), so their code reads as ordinary lws code. The table's
 * prototypes are taken from libwebsockets.h itself (__typeof__), so they
 * cannot drift from it.
 *
 * A transport function that calls lws before lws_lazy_load() succeeded makes
 * a NULL call: only code reachable from a started listener may call lws (and
 * listener_free(NULL) does not). Adding an lws call to the transports means
 * adding it to LWS_LAZY_FUNCTIONS and to the #defines below; the link fails
 * (undefined lws_...) until it is. */
#ifndef DEPLOY_MCP_LWS_LAZY_H
#define DEPLOY_MCP_LWS_LAZY_H

#include <libwebsockets.h>
#include <stddef.h>

/* Debian's libwebsockets 4.1 (objdump -p libwebsockets.so | grep SONAME) */
#define LWS_LAZY_SONAME "libwebsockets.so.17"

/* Every libwebsockets function the program calls, without its lws_ prefix. */
#define LWS_LAZY_FUNCTIONS(X)            \
    X(add_http_common_headers)           \
    X(add_http_header_by_name)           \
    X(add_http_header_by_token)          \
    X(callback_http_dummy)               \
    X(callback_on_writable)              \
    X(close_reason)                      \
    X(context_destroy)                   \
    X(context_user)                      \
    X(create_context)                    \
    X(finalize_write_http_header)        \
    X(frame_is_binary)                   \
    X(get_context)                       \
    X(get_vhost_by_name)                 \
    X(get_vhost_listen_port)             \
    X(hdr_copy)                          \
    X(hdr_custom_copy)                   \
    X(hdr_custom_length)                 \
    X(hdr_total_length)                  \
    X(http_mark_sse)                     \
    X(http_transaction_completed)        \
    X(is_final_fragment)                 \
    X(is_first_fragment)                 \
    X(remaining_packet_payload)          \
    X(send_pipe_choked)                  \
    X(set_log_level)                     \
    X(set_timeout)                       \
    X(write)

typedef struct lws_lazy_table {
#define LWS_LAZY_FIELD(name) __typeof__(&lws_##name) name;
    LWS_LAZY_FUNCTIONS(LWS_LAZY_FIELD)
#undef LWS_LAZY_FIELD
} lws_lazy_table;

/* Filled by lws_lazy_load(); all NULL before. */
extern lws_lazy_table lws_lazy;

/* Loads libwebsockets, once (later calls return 0 at once). Returns 0, or -1
 * with "libwebsockets could not be loaded: <reason>" in err. */
int lws_lazy_load(char *err, size_t errlen);

/* Tests: the library to load instead of LWS_LAZY_SONAME (NULL restores it);
 * only before the first successful load. */
void lws_lazy_set_library(const char *soname);

#ifndef LWS_LAZY_NO_MACROS
#define lws_add_http_common_headers     lws_lazy.add_http_common_headers
#define lws_add_http_header_by_name     lws_lazy.add_http_header_by_name
#define lws_add_http_header_by_token    lws_lazy.add_http_header_by_token
#define lws_callback_http_dummy         lws_lazy.callback_http_dummy
#define lws_callback_on_writable        lws_lazy.callback_on_writable
#define lws_close_reason                lws_lazy.close_reason
#define lws_context_destroy             lws_lazy.context_destroy
#define lws_context_user                lws_lazy.context_user
#define lws_create_context              lws_lazy.create_context
#define lws_finalize_write_http_header  lws_lazy.finalize_write_http_header
#define lws_frame_is_binary             lws_lazy.frame_is_binary
#define lws_get_context                 lws_lazy.get_context
#define lws_get_vhost_by_name           lws_lazy.get_vhost_by_name
#define lws_get_vhost_listen_port       lws_lazy.get_vhost_listen_port
#define lws_hdr_copy                    lws_lazy.hdr_copy
#define lws_hdr_custom_copy             lws_lazy.hdr_custom_copy
#define lws_hdr_custom_length           lws_lazy.hdr_custom_length
#define lws_hdr_total_length            lws_lazy.hdr_total_length
#define lws_http_mark_sse               lws_lazy.http_mark_sse
#define lws_http_transaction_completed  lws_lazy.http_transaction_completed
#define lws_is_final_fragment           lws_lazy.is_final_fragment
#define lws_is_first_fragment           lws_lazy.is_first_fragment
#define lws_remaining_packet_payload    lws_lazy.remaining_packet_payload
#define lws_send_pipe_choked            lws_lazy.send_pipe_choked
#define lws_set_log_level               lws_lazy.set_log_level
#define lws_set_timeout                 lws_lazy.set_timeout
#define lws_write                       lws_lazy.write
#endif

#endif
