/* b64.h — base64url without padding (RFC 4648 §5), used for opaque cursors
 * and request signatures. */
#ifndef DEPLOY_MCP_B64_H
#define DEPLOY_MCP_B64_H

#include <stddef.h>

/* Encodes len bytes into a malloc'd NUL-terminated string (caller frees).
 * Returns NULL when out of memory. */
char *b64url_encode(const unsigned char *data, size_t len);

/* Decodes a base64url string (padding tolerated) into a malloc'd buffer with
 * a NUL appended (caller frees); *out_len gets the byte count. Returns NULL
 * for invalid input or out of memory. */
unsigned char *b64url_decode(const char *text, size_t *out_len);

#endif
