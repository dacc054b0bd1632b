/* base/sha256.h - SHA-256 (content hashes, model fingerprints). */
#ifndef SX_BASE_SHA256_H
#define SX_BASE_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sx_sha256 {
    uint32_t state[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t used;
} sx_sha256;

void sx_sha256_init(sx_sha256 *h);
void sx_sha256_update(sx_sha256 *h, const void *data, size_t len);
void sx_sha256_final(sx_sha256 *h, uint8_t digest[32]);
/* Writes 64 lowercase hex characters and a NUL. */
void sx_hex(const uint8_t *bytes, size_t n, char *out);
/* Hashes a whole file; 0 on success, -1 (errno set) when it cannot be read. */
int sx_sha256_file(const char *path, uint8_t digest[32]);

#endif /* SX_BASE_SHA256_H */
