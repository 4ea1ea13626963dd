/* SPDX-License-Identifier: MIT */
/*
 * Descriptors with the names and template fields of the built-in plugins,
 * preloaded so unit tests and fuzz targets load configs that name them
 * without any plugin file. Their create() refuses: they only type configs.
 */
#ifndef SB_TEST_FAKE_PLUGINS_H
#define SB_TEST_FAKE_PLUGINS_H

/* Registers the fakes with sb_plugins_preload(). */
void fake_plugins_preload(void);

#endif
