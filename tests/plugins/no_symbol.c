/* SPDX-License-Identifier: MIT */
/*
 * A shared object that exports a function but no `switchboard_plugin`:
 * the loader must say it is not a plugin, naming its path.
 */
#include <switchboard/plugin.h>

SB_PLUGIN_EXPORT int no_symbol_answer(void);

SB_PLUGIN_EXPORT int no_symbol_answer(void)
{
    return 42;
}
