/* SPDX-License-Identifier: MIT */
/*
 * Listening sockets for the webhook and admin listeners. We bind them
 * ourselves rather than through libmicrohttpd so a failure names the
 * address and the reason (EADDRINUSE, EACCES).
 */
#ifndef SB_NET_H
#define SB_NET_H

#include "config.h"
#include "status.h"

/*
 * Binds and listens on `addr` (SO_REUSEADDR, close-on-exec, non-blocking).
 * On SB_OK *out_fd is a socket the caller owns; *out_ipv6 says whether
 * it is an IPv6 one. On SB_ERR_IO `err` names the address and the reason.
 */
enum sb_status sb_net_listen(const struct sb_listen *addr, int *out_fd,
                             int *out_ipv6, struct sb_error *err);

#endif
