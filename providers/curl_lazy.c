/* curl_lazy.c — loads libcurl on first use (see curl_lazy.h). */
#define CURL_LAZY_NO_MACROS
#include "providers/curl_lazy.h"

#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define CURL_LAZY_ERROR_MAX 512

curl_lazy_table curl_lazy;

static void *lib;              /* the dlopen handle once loaded */
static bool initialised;       /* curl_global_init succeeded */
static const char *soname_override;
static char load_error[CURL_LAZY_ERROR_MAX];

/* dlsym returns an object pointer; the table holds function pointers of the
 * same size (POSIX requires the conversion to work). */
_Static_assert(sizeof(void *) == sizeof(void (*)(void)),
               "function pointers must be as wide as object pointers");

#define SYM(field, name) { name, offsetof(curl_lazy_table, field) }

static const struct {
    const char *name;
    size_t offset;
} symbols[] = {
    SYM(global_init, "curl_global_init"),
    SYM(global_cleanup, "curl_global_cleanup"),
    SYM(easy_init, "curl_easy_init"),
    SYM(easy_setopt, "curl_easy_setopt"),
    SYM(easy_getinfo, "curl_easy_getinfo"),
    SYM(easy_pause, "curl_easy_pause"),
    SYM(easy_cleanup, "curl_easy_cleanup"),
    SYM(easy_strerror, "curl_easy_strerror"),
    SYM(multi_init, "curl_multi_init"),
    SYM(multi_setopt, "curl_multi_setopt"),
    SYM(multi_add_handle, "curl_multi_add_handle"),
    SYM(multi_remove_handle, "curl_multi_remove_handle"),
    SYM(multi_assign, "curl_multi_assign"),
    SYM(multi_socket_action, "curl_multi_socket_action"),
    SYM(multi_info_read, "curl_multi_info_read"),
    SYM(multi_cleanup, "curl_multi_cleanup"),
    SYM(multi_strerror, "curl_multi_strerror"),
    SYM(slist_append, "curl_slist_append"),
    SYM(slist_free_all, "curl_slist_free_all"),
    SYM(getdate, "curl_getdate"),
};

/* Every slot of the table is filled from the list above. */
_Static_assert(sizeof symbols / sizeof symbols[0] ==
                   sizeof(curl_lazy_table) / sizeof(void (*)(void)),
               "every curl_lazy_table field needs a symbol");

#if defined(__GNUC__)
/* The table's prototypes must be curl's own (curl.h declares them). */
#define SAME_TYPE(field, fn)                                                          \
    _Static_assert(__builtin_types_compatible_p(__typeof__(curl_lazy.field),          \
                                                __typeof__(&fn)),                     \
                   #fn " has another prototype in curl.h")
SAME_TYPE(global_init, curl_global_init);
SAME_TYPE(global_cleanup, curl_global_cleanup);
SAME_TYPE(easy_init, curl_easy_init);
SAME_TYPE(easy_setopt, curl_easy_setopt);
SAME_TYPE(easy_getinfo, curl_easy_getinfo);
SAME_TYPE(easy_pause, curl_easy_pause);
SAME_TYPE(easy_cleanup, curl_easy_cleanup);
SAME_TYPE(easy_strerror, curl_easy_strerror);
SAME_TYPE(multi_init, curl_multi_init);
SAME_TYPE(multi_setopt, curl_multi_setopt);
SAME_TYPE(multi_add_handle, curl_multi_add_handle);
SAME_TYPE(multi_remove_handle, curl_multi_remove_handle);
SAME_TYPE(multi_assign, curl_multi_assign);
SAME_TYPE(multi_socket_action, curl_multi_socket_action);
SAME_TYPE(multi_info_read, curl_multi_info_read);
SAME_TYPE(multi_cleanup, curl_multi_cleanup);
SAME_TYPE(multi_strerror, curl_multi_strerror);
SAME_TYPE(slist_append, curl_slist_append);
SAME_TYPE(slist_free_all, curl_slist_free_all);
SAME_TYPE(getdate, curl_getdate);
#endif

int curl_lazy_load(void)
{
    if (initialised)
        return 0;
    load_error[0] = '\0';
    const char *name = soname_override ? soname_override : CURL_LAZY_SONAME;
    void *h = lib;
    if (!h) {
        /* RTLD_LOCAL: curl's symbols stay out of the global namespace */
        h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char *why = dlerror();
            snprintf(load_error, sizeof load_error, "libcurl could not be loaded: %s",
                     why ? why : name);
            return -1;
        }
    }
    curl_lazy_table t;
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        (void)dlerror();
        void *p = dlsym(h, symbols[i].name);
        if (!p) {
            snprintf(load_error, sizeof load_error,
                     "libcurl could not be loaded: %s has no %s (libcurl 7.88 or later "
                     "is needed)", name, symbols[i].name);
            if (h != lib)
                dlclose(h);
            return -1;
        }
        memcpy((char *)&t + symbols[i].offset, &p, sizeof p);
    }
    lib = h; /* kept mapped from here on, even if the init below fails */
    if (t.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(load_error, sizeof load_error,
                 "libcurl could not be loaded: curl_global_init failed");
        return -1;
    }
    curl_lazy = t;
    initialised = true;
    return 0;
}

bool curl_lazy_loaded(void)
{
    return initialised;
}

const char *curl_lazy_error(void)
{
    return load_error;
}

void curl_lazy_cleanup(void)
{
    if (!initialised)
        return;
    curl_lazy.global_cleanup();
    initialised = false;
    memset(&curl_lazy, 0, sizeof curl_lazy);
}

void curl_lazy_set_library(const char *soname)
{
    if (!lib)
        soname_override = soname;
}
