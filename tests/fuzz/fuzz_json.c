/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for core/json: whatever parses must write back as JSON
 * that parses again to an equal value, and nothing may crash, leak or
 * read out of bounds on the way.
 */
#include "build_config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"

/* Escaping at most sextuples a byte; the cap only guards a runaway. */
#define FUZZ_JSON_OUT_MAX (1024 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sb_json_doc *doc = NULL;
    struct sb_json_doc *again = NULL;
    struct sb_error err;
    struct sb_buf out;
    struct sb_buf out2;
    enum sb_status rc;

    if (sb_json_parse((const char *)data, size, &doc, &err) != SB_OK) {
        return 0;
    }
    sb_buf_init(&out, FUZZ_JSON_OUT_MAX);
    sb_buf_init(&out2, FUZZ_JSON_OUT_MAX);
    rc = sb_json_write(sb_json_root(doc), &out);
    if (rc == SB_OK) {
        if (sb_json_parse(sb_buf_str(&out), out.len, &again, &err) != SB_OK) {
            abort();
        }
        if (!sb_json_equal(sb_json_root(doc), sb_json_root(again))) {
            abort();
        }
        /* Writing is canonical: the second writing matches the first. */
        if (sb_json_write(sb_json_root(again), &out2) != SB_OK ||
            out2.len != out.len || memcmp(out.data, out2.data, out.len) != 0) {
            abort();
        }
    } else if (rc != SB_ERR_FULL) {
        abort();
    }
    sb_json_doc_free(again);
    sb_json_doc_free(doc);
    sb_buf_cleanup(&out2);
    sb_buf_cleanup(&out);
    return 0;
}
