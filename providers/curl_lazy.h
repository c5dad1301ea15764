/* curl_lazy.h — libcurl, loaded with dlopen on the first upstream request.
 *
 * Linking libcurl pulls ~30 shared libraries (OpenSSL, GnuTLS, LDAP, Kerberos,
 * ssh, ...) into every start of the server, which costs most of its start-up
 * time and idle memory (bench/RESULTS.md). Only an upstream request needs
 * curl, so it is loaded then: curl_lazy_load() dlopens "libcurl.so.4",
 * fills a table with the few functions the program uses, and calls
 * curl_global_init. The program itself links only curl's headers.
 *
 * Files that call curl include this header instead of <curl/curl.h>: it maps
 * every curl function used onto the table (curl_easy_init becomes
 * curl_lazy.easy_init, ...), so call sites read as ordinary curl code. The
 * variadic ones (curl_easy_setopt, curl_multi_setopt, curl_easy_getinfo) keep
 * their variadic prototypes in the table, so the arguments are passed exactly
 * as in a direct call. curl's compile-time type checks of those macros
 * (typecheck-gcc.h) are off here (CURL_DISABLE_TYPECHECK): pass long for
 * CURLOPTTYPE_LONG options, curl_off_t for the *_LARGE ones, as curl requires.
 *
 * Calling one of the mapped functions before curl_lazy_load() succeeded is a
 * NULL call: code paths that may run without curl (cleanup of a client that
 * never made a request) must check curl_lazy_loaded() or their own handles.
 *
 * Everything runs on the loop thread; nothing here is thread-safe (neither
 * is curl_global_init). */
#ifndef DEPLOY_MCP_CURL_LAZY_H
#define DEPLOY_MCP_CURL_LAZY_H

#ifndef CURL_DISABLE_TYPECHECK
#define CURL_DISABLE_TYPECHECK
#endif
#include <curl/curl.h>
#include <stdbool.h>
#include <time.h>

#define CURL_LAZY_SONAME "libcurl.so.4"

typedef struct curl_lazy_table {
    CURLcode (*global_init)(long flags);
    void (*global_cleanup)(void);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *curl, CURLoption option, ...);
    CURLcode (*easy_getinfo)(CURL *curl, CURLINFO info, ...);
    CURLcode (*easy_pause)(CURL *handle, int bitmask);
    void (*easy_cleanup)(CURL *curl);
    const char *(*easy_strerror)(CURLcode code);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_setopt)(CURLM *multi_handle, CURLMoption option, ...);
    CURLMcode (*multi_add_handle)(CURLM *multi_handle, CURL *curl_handle);
    CURLMcode (*multi_remove_handle)(CURLM *multi_handle, CURL *curl_handle);
    CURLMcode (*multi_assign)(CURLM *multi_handle, curl_socket_t sockfd, void *sockp);
    CURLMcode (*multi_socket_action)(CURLM *multi_handle, curl_socket_t s, int ev_bitmask,
                                     int *running_handles);
    CURLMsg *(*multi_info_read)(CURLM *multi_handle, int *msgs_in_queue);
    CURLMcode (*multi_cleanup)(CURLM *multi_handle);
    const char *(*multi_strerror)(CURLMcode code);
    struct curl_slist *(*slist_append)(struct curl_slist *list, const char *string);
    void (*slist_free_all)(struct curl_slist *list);
    time_t (*getdate)(const char *p, const time_t *unused);
} curl_lazy_table;

/* Filled by curl_lazy_load(); all NULL before. */
extern curl_lazy_table curl_lazy;

/* Loads libcurl and runs curl_global_init(CURL_GLOBAL_DEFAULT), once; later
 * calls return at once. Returns 0, or -1 when libcurl could not be loaded
 * (or lacks a function, or its global init failed): curl_lazy_error() then
 * says why, and a later call tries again. */
int curl_lazy_load(void);

/* True once curl_lazy_load() succeeded. */
bool curl_lazy_loaded(void);

/* "libcurl could not be loaded: <reason>" after a failed load, else "". The
 * text stays valid until the next curl_lazy_load(). */
const char *curl_lazy_error(void);

/* curl_global_cleanup() if curl was loaded (the library stays mapped: its
 * TLS backends register exit handlers). For the end of main. */
void curl_lazy_cleanup(void);

/* Tests: the library to load instead of CURL_LAZY_SONAME (NULL restores it).
 * Only takes effect while curl is not loaded yet. */
void curl_lazy_set_library(const char *soname);

#ifndef CURL_LAZY_NO_MACROS
/* curl.h defines the variadic ones as function-like macros (to insist on
 * three arguments); map them onto the table instead. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_global_init        curl_lazy.global_init
#define curl_global_cleanup     curl_lazy.global_cleanup
#define curl_easy_init          curl_lazy.easy_init
#define curl_easy_setopt        curl_lazy.easy_setopt
#define curl_easy_getinfo       curl_lazy.easy_getinfo
#define curl_easy_pause         curl_lazy.easy_pause
#define curl_easy_cleanup       curl_lazy.easy_cleanup
#define curl_easy_strerror      curl_lazy.easy_strerror
#define curl_multi_init         curl_lazy.multi_init
#define curl_multi_setopt       curl_lazy.multi_setopt
#define curl_multi_add_handle   curl_lazy.multi_add_handle
#define curl_multi_remove_handle curl_lazy.multi_remove_handle
#define curl_multi_assign       curl_lazy.multi_assign
#define curl_multi_socket_action curl_lazy.multi_socket_action
#define curl_multi_info_read    curl_lazy.multi_info_read
#define curl_multi_cleanup      curl_lazy.multi_cleanup
#define curl_multi_strerror     curl_lazy.multi_strerror
#define curl_slist_append       curl_lazy.slist_append
#define curl_slist_free_all     curl_lazy.slist_free_all
#define curl_getdate            curl_lazy.getdate
#endif

#endif
