/* sha256.h — SHA-256 (FIPS 180-4), for deriving idempotency keys.
 *
 * OpenSSL is not linked, and the tool layer needs a hash whose keys cannot be
 * guessed from the arguments alone (a random salt is mixed in) and whose
 * collisions are not a concern; a small self-contained implementation does. */
#ifndef DEPLOY_MCP_TOOLS_SHA256_H
#define DEPLOY_MCP_TOOLS_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define TOOL_SHA256_LEN 32

typedef struct tool_sha256_ctx {
    uint32_t h[8];
    uint64_t total;          /* bytes hashed so far */
    unsigned char buf[64];
    size_t buflen;
} tool_sha256_ctx;

void tool_sha256_init(tool_sha256_ctx *c);
void tool_sha256_update(tool_sha256_ctx *c, const void *data, size_t len);
/* Writes the digest; *c must be re-initialised before reuse. */
void tool_sha256_final(tool_sha256_ctx *c, unsigned char out[TOOL_SHA256_LEN]);

/* One-shot convenience. */
void tool_sha256(const void *data, size_t len, unsigned char out[TOOL_SHA256_LEN]);

#endif
