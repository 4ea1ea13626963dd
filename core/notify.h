/* SPDX-License-Identifier: MIT */
/*
 * Readiness and state for a service manager (systemd's Type=notify): one
 * datagram per change to the AF_UNIX socket $NOTIFY_SOCKET names, in the
 * sd_notify(3) format, without linking libsystemd. Outside a service
 * manager (no $NOTIFY_SOCKET) every call does nothing.
 */
#ifndef SB_NOTIFY_H
#define SB_NOTIFY_H

/*
 * Sends `state`, newline-separated VAR=VALUE assignments such as
 * "READY=1" or "STOPPING=1", to $NOTIFY_SOCKET: a path ("/run/...") or
 * an abstract socket ("@name"). Never fails the caller: without the
 * variable, with a malformed one, or when the send fails, nothing
 * happens (a failed send is logged at debug). `state` is borrowed for
 * the call.
 *
 * Reads the environment, so call it from the thread that may also
 * change the environment (main's: the timezone is set there).
 */
void sb_notify(const char *state);

/*
 * "RELOADING=1" with MONOTONIC_USEC, the CLOCK_MONOTONIC time of the
 * call in microseconds, as systemd wants before a reload; send
 * "READY=1" when the reload is over, whether it was applied or not.
 * Same rules as sb_notify.
 */
void sb_notify_reloading(void);

/*
 * "STATUS=<text>", a one-line status systemctl shows. The text is cut
 * at 200 bytes and a newline in it ends it. Never put a secret or a
 * payload value in it. Same rules as sb_notify.
 */
void sb_notify_status(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

#endif
