/* SPDX-License-Identifier: MIT */
/*
 * Bearer-token checking. Secrets are kept only as SHA-256 digests and a
 * presented token is hashed before it is compared, so the comparison
 * always covers 32 bytes per secret whatever the lengths involved, and it
 * visits every configured secret with no early exit: neither the time
 * taken nor its variation tells a client how close its guess was.
 */
#ifndef SB_AUTH_H
#define SB_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "status.h"

#define SB_AUTH_DIGEST_LEN 32

struct sb_auth {
    uint8_t digest[SB_CONFIG_MAX_SECRETS][SB_AUTH_DIGEST_LEN];
    size_t count;
};

/*
 * Hashes `count` secrets (at most SB_CONFIG_MAX_SECRETS) into `auth`, the
 * caller's storage. The secrets stay the caller's. Returns SB_ERR_INVALID
 * when there are none or too many, SB_ERR_IO if hashing fails.
 */
enum sb_status sb_auth_init(struct sb_auth *auth, char *const *secrets,
                            size_t count);

/*
 * Whether an Authorization header value ("Bearer <token>"; NULL when the
 * header is absent) carries one of the secrets. Thread-safe: `auth` is
 * only read.
 */
int sb_auth_check(const struct sb_auth *auth, const char *authorization);

/*
 * Compares `len` bytes in time that depends only on `len`. Returns 1 when
 * equal.
 */
int sb_auth_equal(const uint8_t *a, const uint8_t *b, size_t len);

/* Wipes the digests. */
void sb_auth_cleanup(struct sb_auth *auth);

#endif
