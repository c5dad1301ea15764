/* lws_lazy.c — loads libwebsockets for --listen (see lws_lazy.h). */
#define LWS_LAZY_NO_MACROS
#include "transport/lws_lazy.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

lws_lazy_table lws_lazy;

static bool loaded;
static const char *soname_override;

/* dlsym returns an object pointer; POSIX makes it convertible to the
 * function pointers the table holds, which are as wide. */
_Static_assert(sizeof(void *) == sizeof(void (*)(void)),
               "function pointers must be as wide as object pointers");

static const struct {
    const char *name;
    size_t offset;
} symbols[] = {
#define LWS_LAZY_SYMBOL(n) {"lws_" #n, offsetof(lws_lazy_table, n)},
    LWS_LAZY_FUNCTIONS(LWS_LAZY_SYMBOL)
#undef LWS_LAZY_SYMBOL
};

_Static_assert(sizeof symbols / sizeof symbols[0] ==
                   sizeof(lws_lazy_table) / sizeof(void (*)(void)),
               "every lws_lazy_table field needs a symbol");

int lws_lazy_load(char *err, size_t errlen)
{
    if (loaded)
        return 0;
    const char *name = soname_override ? soname_override : LWS_LAZY_SONAME;
    /* RTLD_LOCAL: lws' event-loop plugin (libwebsockets-evlib_uv) names
     * libwebsockets as a dependency and finds it without the global scope */
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        snprintf(err, errlen, "libwebsockets could not be loaded (--listen needs it; Debian "
                 "package libwebsockets17): %s", why ? why : name);
        return -1;
    }
    lws_lazy_table t;
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        (void)dlerror();
        void *p = dlsym(h, symbols[i].name);
        if (!p) {
            snprintf(err, errlen, "libwebsockets could not be loaded: %s has no %s "
                     "(libwebsockets 4.1 is needed)", name, symbols[i].name);
            dlclose(h);
            return -1;
        }
        memcpy((char *)&t + symbols[i].offset, &p, sizeof p);
    }
    /* kept mapped until exit: the context's teardown runs late (listener_free) */
    lws_lazy = t;
    loaded = true;
    return 0;
}

void lws_lazy_set_library(const char *soname)
{
    if (!loaded)
        soname_override = soname;
}
