# SPDX-License-Identifier: MIT
"""A user's own plugin, built out of the tree (SPEC §8, plugins/example/).

`make install DESTDIR=...` from the build tree puts the plugin header and
switchboard.pc in place; plugins/example/example.c, copied alone into a
folder of its own, then builds with nothing but
`cc -shared -fPIC $(pkg-config --cflags switchboard) example.c -o example.so`.
The installed `switchboard serve` loads that example.so from plugins.dir
and the plugin writes its line for a posted event, and refuses the type
its `fail_on_type` names.
"""

import contextlib
import os
import re
import shutil
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

EXAMPLE_C = os.path.join(h.REPO, "plugins", "example", "example.c")
BUILD_TIMEOUT = 45.0
DELIVERY_TIMEOUT = 15.0
# What the project itself builds C with (STYLE §10), for the strict build.
STRICT = ["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Wshadow", "-Wstrict-prototypes",
          "-Wmissing-prototypes", "-Wpointer-arith", "-Wcast-align", "-Wwrite-strings",
          "-Wformat=2", "-Wundef", "-Wvla", "-Wimplicit-fallthrough", "-fno-common",
          "-fvisibility=hidden", "-Werror"]


def build_dir():
    """The configured build tree the binary under test comes from (build/ by default)."""
    guess = os.path.dirname(os.path.dirname(os.path.abspath(h.binary())))
    if os.path.exists(os.path.join(guess, "Makefile")):
        return guess
    return os.path.join(h.REPO, "build")


def need_tools(*names):
    for name in names:
        h.check(shutil.which(name) is not None, "%s is not installed" % name)


def run(ctx, args, env=None, cwd=None, timeout=BUILD_TIMEOUT, shell=False):
    """Run a build command to completion; its CompletedProcess (text)."""
    try:
        return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", env=env or ctx.env(), cwd=cwd or ctx.tmp,
                              timeout=timeout, shell=shell)
    except subprocess.TimeoutExpired:
        h.fail("%s did not finish within %.0fs" % (args if shell else " ".join(args), timeout))


def make_install(ctx):
    """`make install DESTDIR=<tmp>` from the build tree; the installed prefix inside it."""
    need_tools("make")
    dest = ctx.path("dest")
    res = run(ctx, ["make", "-s", "-C", build_dir(), "install", "DESTDIR=" + dest])
    h.check(res.returncode == 0, "make install exited %d:\n%s"
            % (res.returncode, h.tail(res.stdout + res.stderr, 30)))
    pcs = []
    for root, _, files in os.walk(dest):
        pcs += [os.path.join(root, f) for f in files if f == "switchboard.pc"]
    h.check_eq(len(pcs), 1, "switchboard.pc files installed under %s" % dest)
    libdir = os.path.dirname(os.path.dirname(pcs[0]))
    h.check_eq(os.path.basename(os.path.dirname(pcs[0])), "pkgconfig",
               "folder of switchboard.pc")
    prefix = os.path.dirname(libdir)
    h.check(os.path.isfile(os.path.join(prefix, "include", "switchboard", "plugin.h")),
            "no include/switchboard/plugin.h under %s" % prefix)
    h.check_eq(os.path.basename(libdir), "lib", "switchboard.pc should be in lib/pkgconfig")
    return dest, prefix


def pkg_env(ctx, dest, prefix):
    """pkg-config sees only the installed tree, with paths inside DESTDIR."""
    return ctx.env(PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"),
                   PKG_CONFIG_LIBDIR=os.path.join(prefix, "lib", "pkgconfig"),
                   PKG_CONFIG_SYSROOT_DIR=dest)


def build_example(ctx, dest, prefix):
    """example.c copied alone into src/ and built the documented way; the folder."""
    need_tools("cc", "pkg-config")
    src = ctx.path("src")
    os.makedirs(src)
    shutil.copy(EXAMPLE_C, os.path.join(src, "example.c"))
    env = pkg_env(ctx, dest, prefix)
    res = run(ctx, ["pkg-config", "--cflags", "switchboard"], env=env, cwd=src)
    h.check_eq(res.returncode, 0, "pkg-config exit code (stderr %r)" % res.stderr)
    h.check(os.path.join(prefix, "include") in res.stdout,
            "pkg-config --cflags should point into the install: %r" % res.stdout)
    res = run(ctx, "cc -shared -fPIC $(pkg-config --cflags switchboard) example.c -o example.so",
              env=env, cwd=src, shell=True)
    h.check(res.returncode == 0, "the out-of-tree build failed:\n%s" % h.tail(res.stderr, 30))
    h.check_eq(res.stderr.strip(), "", "compiler warnings from the documented build")
    so = os.path.join(src, "example.so")
    h.check(os.path.isfile(so), "no example.so")
    if shutil.which("nm"):
        res = run(ctx, ["nm", "-D", "--defined-only", so])
        h.check(re.search(r"\bswitchboard_plugin$", res.stdout, re.MULTILINE),
                "example.so does not export switchboard_plugin:\n%s" % res.stdout)
    return src


@contextlib.contextmanager
def installed_binary(prefix):
    """Run the installed switchboard, not the build tree's, inside the block."""
    path = os.path.join(prefix, "bin", "switchboard")
    h.check(os.access(path, os.X_OK), "no installed bin/switchboard under %s" % prefix)
    old = os.environ.get("SWITCHBOARD_BIN")
    os.environ["SWITCHBOARD_BIN"] = path
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("SWITCHBOARD_BIN", None)
        else:
            os.environ["SWITCHBOARD_BIN"] = old


def example_config(ctx, plugin_dir, **output_keys):
    """Config in conf/: the example output `demo` gets every event."""
    os.makedirs(ctx.path("conf"), exist_ok=True)
    output = {"plugin": "example", "path": "demo.log", "prefix": "demo",
              "fail_on_type": "form_signed",
              "retry": {"initial": "50ms", "max_delay": "200ms", "max_attempts": 3}}
    output.update(output_keys)
    cfg = ctx.config(plugins={"dir": plugin_dir}, outputs={"demo": output})
    cfg["rules"] = [{"name": "everything", "send": ["demo"]}]
    return cfg


def case_install_then_build_and_serve(ctx):
    dest, prefix = make_install(ctx)
    h.check(os.path.isfile(os.path.join(prefix, "lib", "switchboard", "plugins", "file.so")),
            "the built-in plugins are not installed in lib/switchboard/plugins")
    src = build_example(ctx, dest, prefix)
    log = ctx.path("conf", "demo.log")
    with installed_binary(prefix):
        cfg = example_config(ctx, src)
        res = h.run_cli(ctx, ["check", "-c", ctx.write_config(cfg, "conf/check.yaml")])
        h.check_eq(res.returncode, 0, "check with example.so (stderr %r)" % res.stderr)
        h.check(not os.path.exists(log), "check created the example's file")

        srv = h.Server(ctx, cfg, name="conf/serve").start()
        good = srv.post_ok(h.load_example("inbound_end_of_call"))
        refused = srv.post_ok(h.load_example("form_signed"))
        h.wait_for("the example's line", lambda: "\n" in h.read_text(log),
                   timeout=DELIVERY_TIMEOUT)

        def settled():
            ds = h.deliveries(ctx, srv.cfg_path)
            return ds if len(ds) == 2 and all(d["state"] != "pending" for d in ds) else None
        ds = {d["event_id"]: d for d in h.wait_for("both deliveries settled", settled,
                                                   timeout=DELIVERY_TIMEOUT)}
        h.check_eq(srv.stop(), 0, "serve exit code")

    h.check_eq(h.read_text(log), "demo: inbound_end_of_call event %s\n" % good,
               "what the example wrote (relative path from the config's folder)")
    h.check_eq(oct(stat.S_IMODE(os.stat(log).st_mode)), oct(0o600), "mode of demo.log")
    h.check_eq((ds[good]["state"], ds[good]["attempts"]), ("delivered", 1),
               "the inbound_end_of_call delivery")
    h.check_eq(ds[refused]["state"], "dead", "the form_signed delivery (fail_on_type)")
    h.check_eq(ds[refused]["attempts"], 1, "a permanent failure is not retried")
    h.check("fail_on_type" in (ds[refused]["last_error"] or ""),
            "last_error of the refused delivery: %r" % ds[refused]["last_error"])


def case_example_keys_are_checked(ctx):
    """The out-of-tree plugin gets the router's key checks: misspelt and missing keys."""
    dest, prefix = make_install(ctx)
    src = build_example(ctx, dest, prefix)
    with installed_binary(prefix):
        cfg = example_config(ctx, src, prefx="oops")
        cfg["outputs"]["demo"].pop("path")
        text = h.to_yaml(cfg) + "\n"
        cfg_path = ctx.write_config(text, "conf/bad.yaml")
        res = h.run_cli(ctx, ["check", "-c", cfg_path])
    h.check_eq(res.returncode, 1, "check exit code (stderr %r)" % res.stderr)
    prefx_line = text.splitlines().index("    prefx: \"oops\"") + 1
    h.check(re.search(r"bad\.yaml:%d:\d+: .*\"prefx\".*example" % prefx_line, res.stderr),
            "misspelt prefx not reported at line %d:\n%s" % (prefx_line, res.stderr))
    h.check(re.search(r"bad\.yaml:\d+:\d+: .*\"path\"", res.stderr),
            "missing path not reported:\n%s" % res.stderr)
    h.check("oops" not in res.stderr, "check quoted a value")


def case_example_builds_with_strict_warnings(ctx):
    """The template users copy compiles clean with the project's own warnings."""
    dest, prefix = make_install(ctx)
    need_tools("cc", "pkg-config")
    env = pkg_env(ctx, dest, prefix)
    cflags = run(ctx, ["pkg-config", "--cflags", "switchboard"], env=env).stdout.split()
    res = run(ctx, ["cc", "-shared", "-fPIC"] + STRICT + cflags
              + [EXAMPLE_C, "-o", ctx.path("strict.so")], env=env)
    h.check(res.returncode == 0, "example.c with strict warnings:\n%s" % h.tail(res.stderr, 30))


CASES = [
    ("make install, out-of-tree cc of example.c, installed serve writes its line",
     case_install_then_build_and_serve),
    ("the out-of-tree example's keys are checked like a built-in's",
     case_example_keys_are_checked),
    ("example.c builds with the project's strict warnings",
     case_example_builds_with_strict_warnings),
]

if __name__ == "__main__":
    h.main(CASES)
