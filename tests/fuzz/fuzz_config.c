/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for config loading and the rule compiler: any file
 * must either load or be refused with at least one positioned error, and
 * nothing may crash, leak or read out of bounds on the way. A loaded
 * config's rules also route one sample event, so compiled trees run.
 */
#include "build_config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fake_plugins.h"
#include "event.h"
#include "rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_event[] =
    "{\"event_type\":\"inbound_end_of_call\",\"payload\":{"
    "\"caller_phone_number\":\"+15035550147\",\"is_urgent\":true,"
    "\"is_spam\":false,\"duration_seconds\":187,\"items\":[{\"sku\":\"a\"}],"
    "\"super_short_report\":\"Pain <since> last night & more\"}}";

/* Routes the sample event once through the loaded rules. */
static void fuzz_route(const struct sb_config *cfg)
{
    size_t len = sizeof(fuzz_event) - 1;
    char *body = malloc(len + 1);
    struct sb_event *event = NULL;
    struct sb_route route;
    struct sb_error err;

    if (body == NULL) {
        return;
    }
    memcpy(body, fuzz_event, len + 1);
    if (sb_event_parse(body, len, &event, &err) != SB_OK) {
        abort(); /* the sample is valid */
    }
    sb_event_stamp(event);
    if (sb_rules_route(cfg->rules, event, 0, &route, NULL) == SB_OK) {
        sb_route_cleanup(&route);
    }
    sb_event_free(event);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sb_errors errs;
    char path[] = "/tmp/sb-fuzz-config-XXXXXX";
    struct sb_config *cfg = NULL;
    int fd = mkstemp(path);
    enum sb_status rc;

    if (fd < 0) {
        return 0;
    }
    fake_plugins_preload();
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        unlink(path);
        return 0;
    }
    close(fd);
    rc = sb_config_load(path, &cfg, &errs);
    unlink(path);
    if (rc == SB_OK) {
        fuzz_route(cfg);
        sb_config_free(cfg);
    } else if (rc == SB_ERR_INVALID && sb_errors_total(&errs) == 0) {
        abort(); /* refused without saying why */
    }
    return 0;
}
