#!/usr/bin/env python3
"""`meson install` gives a complete airlock. The build is installed into a scratch directory, which a
mount namespace of the test's own then puts at the install prefix, with the source tree (and the
build tree in it) hidden under an empty tmpfs: the installed airlock must find its recipes, its
agent, its monitor and its benchmark there, and run a program from `/`. Needs root (the mounts)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import AIRLOCK, BUILD, ROOT, airlock, expect, main, test  # noqa: E402


def prefix_of(build):
    options = json.loads(subprocess.run(["meson", "introspect", "--buildoptions", build],
                                        capture_output=True, text=True, check=True).stdout)
    return next(o["value"] for o in options if o["name"] == "prefix")


def recipe_line(stdout):
    return next((line for line in stdout.splitlines() if line.startswith("current recipe:")), None)


def in_installed_world(dest, prefix, commands):
    """Runs shell commands where only the installed airlock exists: DEST at PREFIX, no sources,
    and none of the variables that point airlock at a source tree."""
    script = "set -e\nmount --bind %s%s %s\nmount -t tmpfs airlock-no-source %s\ncd /\n%s\n" % (
        dest, prefix, prefix, ROOT, "\n".join(commands))
    env = {k: v for k, v in os.environ.items()
           if k not in ("AIRLOCK_AGENT", "AIRLOCK_RECIPES", "AIRLOCK_VMM", "AIRLOCK_QEMU_PRELOAD")}
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, env=env, timeout=180)


@test
def the_installed_airlock_works_without_the_source_tree():
    build = os.path.dirname(os.path.dirname(AIRLOCK)) if os.environ.get("AIRLOCK_BUILD") else BUILD
    prefix = prefix_of(build)
    dest = tempfile.mkdtemp(prefix="airlock-install-")
    try:
        p = subprocess.run(["meson", "install", "-C", build, "--no-rebuild", "--quiet",
                            "--destdir", dest], capture_output=True, text=True, timeout=180)
        expect(p.returncode == 0, "meson install", p.stdout + p.stderr)
        for path in ("bin/airlock", "libexec/airlock/airlock-vmm",
                     "libexec/airlock/airlock-agent", "libexec/airlock/airlock-qemu-preload.so",
                     "share/airlock/images/kernel.config", "share/airlock/bench.py"):
            expect(os.path.exists(os.path.join(dest + prefix, path)), "installed: " + path)
        want = recipe_line(airlock("image", "list").stdout.decode())
        expect(want is not None, "the build tree's airlock names its recipe")
        bin_ = prefix + "/bin/airlock"
        r = in_installed_world(dest, prefix, [
            "test ! -e %s/meson.build" % ROOT,
            bin_ + " image list",
            bin_ + " run --backend tcg 'print(6 * 7)'",
            bin_ + " bench --help 2>&1 | head -1",
        ])
        expect(r.returncode == 0, "the installed airlock ran", r.stdout + r.stderr)
        expect(recipe_line(r.stdout) == want,
               "the installed airlock reads the same recipe (so it uses the images built)",
               (want, r.stdout))
        expect("\n42\n" in "\n" + r.stdout, "the installed airlock ran a program", r.stdout)
        expect("not beside the recipes" not in r.stdout + r.stderr,
               "the installed airlock finds its benchmark", r.stdout + r.stderr)
        expect("usage: bench.py" in r.stdout and "Error" not in r.stdout,
               "the installed benchmark starts (what it imports is installed)", r.stdout)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
