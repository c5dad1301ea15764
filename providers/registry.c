/* registry.c — the table of provider adapters. Adding a platform is adding
 * its file and one line here. */
#include <string.h>

#include "providers/provider.h"

extern const struct provider prov_showly;
extern const struct provider prov_bigcommerce;
extern const struct provider prov_mixpeek;
extern const struct provider prov_bluelink;

const struct provider *const prov_all[] = {
    &prov_showly,
    &prov_bigcommerce,
    &prov_mixpeek,
    &prov_bluelink,
    NULL,
};

const struct provider *prov_lookup(const char *name)
{
    for (size_t i = 0; name && prov_all[i]; i++)
        if (strcmp(prov_all[i]->name, name) == 0)
            return prov_all[i];
    return NULL;
}

bool prov_known(const char *name) { return prov_lookup(name) != NULL; }
