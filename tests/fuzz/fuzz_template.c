/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for core/template. The input is a template, then an
 * event: split at the first NUL byte, or at the first newline when there
 * is no NUL (so a seed with a NUL can fuzz multi-line templates). Every
 * parse error must carry a position; every rendering, in every escaping
 * mode, must keep the promises a plugin relies on: a header never holds
 * CR or LF, a JSON string stays one JSON string, Slack text holds no
 * bare < or >, and a capped rendering is a prefix of the full one.
 */
#include "build_config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "template.h"

#define FUZZ_TEMPLATE_OUT_MAX   4096
#define FUZZ_TEMPLATE_SMALL_CAP 61 /* odd, to land inside escapes */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Where the template ends: the first NUL, else the first newline. */
static size_t fuzz_template_split(const uint8_t *data, size_t size)
{
    const uint8_t *cut = memchr(data, '\0', size);

    if (cut == NULL) {
        cut = memchr(data, '\n', size);
    }
    return cut != NULL ? (size_t)(cut - data) : size;
}

/* Whether `n` bytes of `s`, put between quotes, are one JSON string. */
static int fuzz_template_is_json_string(const char *s, size_t n)
{
    struct sb_buf quoted;
    struct sb_json_doc *doc = NULL;
    struct sb_error err;
    int ok;

    sb_buf_init(&quoted, n + 2);
    if (sb_buf_addc(&quoted, '"') != SB_OK ||
        sb_buf_add(&quoted, s, n) != SB_OK ||
        sb_buf_addc(&quoted, '"') != SB_OK) {
        abort();
    }
    ok = sb_json_parse(sb_buf_str(&quoted), quoted.len, &doc, &err) == SB_OK &&
         sb_json_root(doc)->type == SB_JSON_STRING;
    sb_json_doc_free(doc);
    sb_buf_cleanup(&quoted);
    return ok;
}

static void fuzz_template_check(const char *text, enum sb_escape escape,
                                const struct sb_buf *out)
{
    const char *s = sb_buf_str(out);

    if (strlen(s) > out->len || out->len > FUZZ_TEMPLATE_OUT_MAX) {
        /* A NUL may come from a value, never bytes past len. */
        abort();
    }
    if (escape == SB_ESCAPE_HEADER && (memchr(s, '\r', out->len) != NULL ||
                                       memchr(s, '\n', out->len) != NULL)) {
        abort();
    }
    /*
     * Every escape in the text lies within one literal piece (a tag
     * starts with '{', which no escape takes), so when the template's
     * own text is a valid JSON string, its rendering must be one too.
     */
    if (escape == SB_ESCAPE_JSON &&
        fuzz_template_is_json_string(text, strlen(text)) &&
        !fuzz_template_is_json_string(s, out->len)) {
        abort();
    }
    if (escape == SB_ESCAPE_SLACK && strpbrk(text, "<>") == NULL &&
        (memchr(s, '<', out->len) != NULL ||
         memchr(s, '>', out->len) != NULL)) {
        abort();
    }
}

/* Renders once in full and once capped; the capped one is a prefix. */
static void fuzz_template_render(const char *text,
                                 const struct sb_template *tpl,
                                 const struct sb_template_context *ctx,
                                 enum sb_escape escape)
{
    struct sb_buf full;
    struct sb_buf small;
    enum sb_status rc_full;
    enum sb_status rc_small;

    sb_buf_init(&full, FUZZ_TEMPLATE_OUT_MAX);
    sb_buf_init(&small, FUZZ_TEMPLATE_SMALL_CAP);
    rc_full = sb_template_render(tpl, ctx, escape, &full);
    rc_small = sb_template_render(tpl, ctx, escape, &small);
    if ((rc_full != SB_OK && rc_full != SB_ERR_FULL) ||
        (rc_small != SB_OK && rc_small != SB_ERR_FULL)) {
        abort();
    }
    if (rc_full == SB_OK) {
        fuzz_template_check(text, escape, &full);
    }
    if (small.len > full.len ||
        memcmp(sb_buf_str(&small), sb_buf_str(&full), small.len) != 0 ||
        (rc_full == SB_OK && full.len <= small.max && rc_small != SB_OK) ||
        (rc_full == SB_OK && rc_small == SB_OK && small.len != full.len)) {
        abort();
    }
    sb_buf_cleanup(&small);
    sb_buf_cleanup(&full);
}

static void fuzz_template_parse_failed(const char *text,
                                       const struct sb_error *err)
{
    unsigned lines = 1;
    const char *s;

    for (s = text; *s != '\0'; s++) {
        lines += *s == '\n';
    }
    if (err->line == 0 || err->line > lines || err->col == 0 ||
        err->msg[0] == '\0' || strstr(err->msg, "expected") == NULL) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum sb_escape modes[] = {SB_ESCAPE_NONE, SB_ESCAPE_JSON,
                                           SB_ESCAPE_SLACK, SB_ESCAPE_HEADER};
    struct sb_template_context ctx;
    struct sb_template *tpl = NULL;
    struct sb_json_doc *doc = NULL;
    struct sb_error err;
    size_t split = fuzz_template_split(data, size);
    char *text;
    size_t i;

    text = malloc(split + 1);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, split);
    text[split] = '\0';
    sb_error_clear(&err);
    if (sb_template_parse(text, &tpl, &err) != SB_OK) {
        fuzz_template_parse_failed(text, &err);
        free(text);
        return 0;
    }

    memset(&ctx, 0, sizeof(ctx));
    ctx.event_id = "01HZX3K4M5N6P7Q8R9S0T1V2W3";
    ctx.received_at = "2024-05-01T12:00:00.123Z";
    ctx.rule = "rule \"q\" <&> \r\n end"; /* built-ins are escaped too */
    if (split < size && sb_json_parse((const char *)data + split + 1,
                                      size - split - 1, &doc, &err) == SB_OK) {
        ctx.event = sb_json_root(doc);
    }
    for (i = 0; i < sizeof(modes) / sizeof(modes[0]) * 2; i++) {
        ctx.redact = (int)(i % 2);
        fuzz_template_render(text, tpl, &ctx, modes[i / 2]);
    }

    sb_json_doc_free(doc);
    sb_template_free(tpl);
    free(text);
    return 0;
}
