/* SPDX-License-Identifier: MIT */
/*
 * Constant-time bearer checks over hashed secrets (see auth.h for why
 * hashing first removes the length leak).
 */
#include "build_config.h"

#include "auth.h"

#include <string.h>
#include <strings.h>

#include <gnutls/crypto.h>

static enum sb_status auth_hash(const char *text, size_t len,
                                uint8_t out[SB_AUTH_DIGEST_LEN])
{
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, text, len, out) < 0) {
        return SB_ERR_IO;
    }
    return SB_OK;
}

enum sb_status sb_auth_init(struct sb_auth *auth, char *const *secrets,
                            size_t count)
{
    size_t i;

    memset(auth, 0, sizeof(*auth));
    if (count == 0 || count > SB_CONFIG_MAX_SECRETS) {
        return SB_ERR_INVALID;
    }
    for (i = 0; i < count; i++) {
        enum sb_status rc =
            auth_hash(secrets[i], strlen(secrets[i]), auth->digest[i]);

        if (rc != SB_OK) {
            sb_auth_cleanup(auth);
            return rc;
        }
    }
    auth->count = count;
    return SB_OK;
}

int sb_auth_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    volatile uint8_t diff = 0;
    size_t i;

    for (i = 0; i < len; i++) {
        diff |= (uint8_t)(a[i] ^ b[i]);
    }
    return diff == 0;
}

/* The token after "Bearer " (scheme case-insensitive, RFC 7235 §2.1). */
static const char *auth_token(const char *authorization)
{
    const char *p;

    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7)) {
        return NULL;
    }
    p = authorization + 7;
    while (*p == ' ') {
        p++;
    }
    return *p != '\0' ? p : NULL;
}

int sb_auth_check(const struct sb_auth *auth, const char *authorization)
{
    uint8_t presented[SB_AUTH_DIGEST_LEN];
    const char *token = auth_token(authorization);
    size_t len;
    int match = 0;
    size_t i;

    if (token == NULL) {
        return 0;
    }
    len = strlen(token);
    while (len > 0 && token[len - 1] == ' ') {
        len--;
    }
    if (auth_hash(token, len, presented) != SB_OK) {
        return 0;
    }
    for (i = 0; i < auth->count; i++) {
        match |= sb_auth_equal(presented, auth->digest[i], SB_AUTH_DIGEST_LEN);
    }
    return match;
}

void sb_auth_cleanup(struct sb_auth *auth)
{
    explicit_bzero(auth, sizeof(*auth));
}
