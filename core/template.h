/* SPDX-License-Identifier: MIT */
/*
 * Templates (SPEC §5): "{{path}}" inserts a value, "{{#path}}...{{/path}}"
 * renders its inside when the value is truthy, "{{^path}}...{{/path}}"
 * when it is not. Parsed once at load; rendered per delivery with the
 * escaping of the field the text lands in. Values are escaped, the
 * template's own text is not, except that a header field never contains
 * CR or LF at all.
 */
#ifndef SB_TEMPLATE_H
#define SB_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "json.h"
#include "status.h"

#define SB_TEMPLATE_MAX_OUTPUT (64 * 1024) /* a rendered field's cap */
#define SB_TEMPLATE_MAX_DEPTH  16          /* nested sections */

enum sb_escape {
    SB_ESCAPE_NONE,   /* as is: a file line, a plain-text body */
    SB_ESCAPE_JSON,   /* inside a JSON string: \" \\ \n \u0001 ... */
    SB_ESCAPE_SLACK,  /* Slack mrkdwn: & < > as &amp; &lt; &gt; */
    SB_ESCAPE_HEADER, /* an email header: CR and LF become spaces */
};

/*
 * What a template is rendered against. `event` is the whole body
 * ({"event_type", "payload", ...}); the built-ins event_id, received_at
 * (RFC 3339 UTC with ms) and rule come from the other fields. With
 * `redact` set, every inserted value is replaced by "[path]" so a dry run
 * can show a message's shape without a patient's details.
 */
struct sb_template_context {
    const struct sb_json *event;
    const char *event_id;
    const char *received_at;
    const char *rule;
    int redact;
};

struct sb_template;

/*
 * Parses `text`. On SB_OK the caller owns *out_tpl (sb_template_free). On
 * SB_ERR_INVALID `err` says what is wrong with err->line and err->col
 * counted within `text` (1-based): an unclosed "{{", an unclosed or
 * mismatched section, an empty or malformed path.
 */
enum sb_status sb_template_parse(const char *text, struct sb_template **out_tpl,
                                 struct sb_error *err);

/*
 * Appends the rendering to `out`. Strings insert their text, numbers and
 * booleans as in JSON, objects and arrays as compact JSON, absent values
 * and null as nothing; everything inserted is escaped per `escape`.
 * Falsy for sections: absent, null, false, 0, "", [] and {}. Returns
 * SB_ERR_FULL when `out`'s cap is reached (what was appended stays).
 * Never allocates beyond `out`'s growth. Thread-safe: `tpl` is read only.
 */
enum sb_status sb_template_render(const struct sb_template *tpl,
                                  const struct sb_template_context *ctx,
                                  enum sb_escape escape, struct sb_buf *out);

/* Whether the template is only literal text (no {{...}} at all). */
int sb_template_is_literal(const struct sb_template *tpl);

/* Frees a template. Accepts NULL. */
void sb_template_free(struct sb_template *tpl);

#endif
