/* hmac.h — HMAC-SHA256 (RFC 2104 over FIPS 180-4 SHA-256), for request
 * signatures such as Bluelink-Signature-V1.
 *
 * OpenSSL is not linked; the SHA-256 the tool layer already carries
 * (tools/sha256.h) is reused. Keys are secrets: nothing here logs, and the
 * key-derived blocks on the stack are wiped before returning. */
#ifndef DEPLOY_MCP_HMAC_H
#define DEPLOY_MCP_HMAC_H

#include <stddef.h>

#define HMAC_SHA256_LEN 32      /* digest bytes */

/* Writes HMAC-SHA256(key, msg) into out. Any key length (keys longer than
 * the 64-byte block are hashed first, per RFC 2104). */
void hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len,
                 unsigned char out[HMAC_SHA256_LEN]);

/* Overwrites n bytes at p with zeros in a way the compiler may not drop
 * (for buffers that held a secret). */
void hmac_wipe(void *p, size_t n);

#endif
