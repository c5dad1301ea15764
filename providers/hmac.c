/* hmac.c — HMAC-SHA256 after RFC 2104 (see hmac.h). */
#include "providers/hmac.h"

#include <string.h>

#include "tools/sha256.h"

#define HMAC_BLOCK 64           /* SHA-256 block size */

void hmac_wipe(void *p, size_t n)
{
    /* Through a volatile pointer so the stores count as observable. */
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

void hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len,
                 unsigned char out[HMAC_SHA256_LEN])
{
    unsigned char k[HMAC_BLOCK], pad[HMAC_BLOCK], inner[TOOL_SHA256_LEN];
    memset(k, 0, sizeof k);
    if (key_len > HMAC_BLOCK)
        tool_sha256(key, key_len, k);
    else if (key_len > 0)
        memcpy(k, key, key_len);

    tool_sha256_ctx c;
    for (size_t i = 0; i < HMAC_BLOCK; i++)
        pad[i] = k[i] ^ 0x36;
    tool_sha256_init(&c);
    tool_sha256_update(&c, pad, sizeof pad);
    if (msg_len > 0) /* msg may be NULL then; memcpy(NULL, 0) is still UB */
        tool_sha256_update(&c, msg, msg_len);
    tool_sha256_final(&c, inner);

    for (size_t i = 0; i < HMAC_BLOCK; i++)
        pad[i] = k[i] ^ 0x5c;
    tool_sha256_init(&c);
    tool_sha256_update(&c, pad, sizeof pad);
    tool_sha256_update(&c, inner, sizeof inner);
    tool_sha256_final(&c, out);

    hmac_wipe(k, sizeof k);
    hmac_wipe(pad, sizeof pad);
    hmac_wipe(inner, sizeof inner);
    hmac_wipe(&c, sizeof c);
}
