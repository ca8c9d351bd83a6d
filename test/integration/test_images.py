#!/usr/bin/env python3
"""Images of one's own (`airlock image build --recipe FILE`, `--image NAME`; docs/images.md): a
recipe's Debian package, wheel, npm package and file are in the image's VMs and in no other; the
tool description says what the image holds; a failed step names itself and leaves nothing; an
image that is not there, or was built on another stock image, is refused with what to do.

Each test builds in an image directory of its own, whose stock kernel and base tree are hard
links to the cache's (the suite runs after `images/build.sh all`); the apt step reaches
Debian's archive, as the base's build did.
"""
import base64
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import airlock, expect, main, test  # noqa: E402
from mcp_session import started  # noqa: E402


def private_images():
    """A new image directory holding the cache's current kernel and base tree (hard links; one
    the cache lacks, the build makes)."""
    listing = airlock("image", "list").stdout.decode()
    cache = re.search(r"image directory: (.*)", listing).group(1)
    keys = re.search(r"current recipe: *(kernel-[0-9a-f]{16}) (base-[0-9a-f]{16})", listing)
    tmp = tempfile.mkdtemp(prefix="airlock-images-test-")
    for name in keys.groups():
        if os.path.isdir(os.path.join(cache, name)):
            r = os.spawnvp(os.P_WAIT, "cp", ["cp", "-al", os.path.join(cache, name), tmp])
            expect(r == 0, "hard links to %s" % name)
    return tmp


def wheel(directory):
    """A pure-Python wheel, airlock_probe 1.0 (VALUE = "from a wheel"), made here: no index."""
    files = {
        "airlock_probe/__init__.py": b'VALUE = "from a wheel"\n',
        "airlock_probe-1.0.dist-info/METADATA":
            b"Metadata-Version: 2.1\nName: airlock-probe\nVersion: 1.0\n",
        "airlock_probe-1.0.dist-info/WHEEL":
            b"Wheel-Version: 1.0\nGenerator: airlock-test\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n",
    }
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += "%s,sha256=%s,%d\n" % (path, digest, len(data))
    record += "airlock_probe-1.0.dist-info/RECORD,,\n"
    os.makedirs(directory)
    with zipfile.ZipFile(os.path.join(directory, "airlock_probe-1.0-py3-none-any.whl"), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
        z.writestr("airlock_probe-1.0.dist-info/RECORD", record)


def npm_tarball(path):
    """An npm package, airlock-probe 1.0.0, exporting "from an npm package"."""
    with tarfile.open(path, "w:gz") as t:
        for name, data in (
                ("package/package.json", json.dumps({"name": "airlock-probe", "version": "1.0.0",
                                                     "main": "index.js"}).encode()),
                ("package/index.js", b'module.exports = "from an npm package";\n')):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            t.addfile(info, io.BytesIO(data))


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def leftovers(images, name):
    """What a build of image name left in the image directory besides the stock parts."""
    return sorted(n for n in os.listdir(images) + [
        "images/" + n for n in (os.listdir(os.path.join(images, "images"))
                                if os.path.isdir(os.path.join(images, "images")) else [])]
        if name in n or n.startswith(".tmp-") or n.startswith("rootfs-"))


PROBE = ('echo \'{"a": 7}\' | jq .a; '
         'python3 -c "import airlock_probe; print(airlock_probe.VALUE)"; '
         'node -e "console.log(require(\'airlock-probe\'))"; '
         'cat /opt/probe/greeting.txt; stat -c "%U %a" /opt/probe/greeting.txt')


@test(timeout=900)
def a_recipe_builds_an_image_of_ones_own():
    images = private_images()
    recipe_dir = tempfile.mkdtemp(prefix="airlock-recipe-")
    try:
        wheel(os.path.join(recipe_dir, "wheels"))
        npm_tarball(os.path.join(recipe_dir, "airlock-probe-1.0.0.tgz"))
        write(os.path.join(recipe_dir, "data", "greeting.txt"), "hello from the recipe\n")
        recipe = os.path.join(recipe_dir, "probe.recipe")
        write(recipe, "# what the probe image adds\n"
                      "name probe\n"
                      "apt jq\n"
                      "pip airlock-probe==1.0\npip-wheels wheels\n"
                      "npm ./airlock-probe-1.0.0.tgz\n"
                      "copy data/greeting.txt /opt/probe/greeting.txt\n")
        r = airlock("image", "build", "--images", images, "--recipe", recipe, timeout=840)
        expect(r.status == 0 and b"image 'probe' ready" in r.stderr, "the image built", r)

        # every kind of addition, in a VM of the image, restored from its own snapshot
        r = airlock("run", "--images", images, "--image", "probe", "--lang", "bash", "--verbose",
                    PROBE)
        expect(r.status == 0 and r.stdout == b"7\nfrom a wheel\nfrom an npm package\n"
               b"hello from the recipe\nroot 644\n", "jq, the wheel, the npm package, the file",
               r)
        expect(b"restored from the snapshot" in r.stderr, "restored from the image's snapshot",
               r)
        r = airlock("run", "--images", images, "--image", "probe", "--lang", "python",
                    "import airlock_probe; print(airlock_probe.VALUE)")
        expect(r.status == 0 and r.stdout == b"from a wheel\n", "the waiting python imports it",
               r)
        r = airlock("run", "--images", images, "--image", "probe", "--lang", "javascript",
                    "console.log(require('airlock-probe'))")
        expect(r.status == 0 and r.stdout == b"from an npm package\n",
               "the waiting node requires it", r)
        # the stock image (the cache's) has none of it
        r = airlock("run", "--lang", "bash", "command -v jq; ls /opt/probe 2>&1; true")
        expect(r.status == 0 and b"jq" not in r.stdout and b"No such file" in r.stdout,
               "the stock image is unchanged", r)

        listing = airlock("image", "list", "--images", images).stdout.decode()
        expect(re.search(r"^  probe +image-probe-[0-9a-f]{16}  ready; adds Debian packages: jq;",
                         listing, re.M), "image list shows it ready, with what it adds", listing)
        r = airlock("image", "prune", "--images", images, "--dry-run")
        expect(r.status == 0 and b"probe" not in r.stdout and b"would remove 0 " in r.stdout,
               "prune keeps the image, its root file system and its snapshots", r)

        # the server says what the image holds, to the LLM
        s = started("--images", images, "--image", "probe", "--pool", "0")
        try:
            tools = s.request(1, "tools/list")["result"]["tools"]
            description = tools[0]["description"]
            instructions = s.init_result["result"]["instructions"]
        finally:
            s.close()
        for text in (description, instructions):
            expect("This image (probe) also has Debian packages: jq; Python packages: "
                   "airlock-probe==1.0;" in text and "/opt/probe/greeting.txt" in text,
                   "the description and instructions list the image's contents", text)
    finally:
        shutil.rmtree(images, ignore_errors=True)
        shutil.rmtree(recipe_dir, ignore_errors=True)


@test(timeout=600)
def a_failed_step_names_itself_and_leaves_nothing():
    images = private_images()
    recipe_dir = tempfile.mkdtemp(prefix="airlock-recipe-")
    try:
        recipe = os.path.join(recipe_dir, "broken.recipe")
        write(recipe, "name broken\napt airlock-no-such-package\n")
        r = airlock("image", "build", "--images", images, "--recipe", recipe, timeout=540)
        err = r.stderr.decode()
        log = re.search(r"see (\S+image-broken-[0-9a-f]{16}\.log)", err)
        expect(r.status == 1 and "failed at step 'image-broken'" in err and
               "derived: step 'apt' failed" in err and log, "the step and its log named", r)
        with open(log.group(1)) as f:
            expect("Unable to locate package airlock-no-such-package" in f.read(),
                   "the log holds apt's own message", log.group(1))
        expect(leftovers(images, "broken") == [], "nothing half-built, nothing registered",
               leftovers(images, "broken"))
        r = airlock("run", "--images", images, "--image", "broken", "echo")
        expect(r.status != 0 and b"no image 'broken'" in r.stderr, "not usable", r)

        # a bad recipe is refused before anything runs, with its line
        write(recipe, "name broken\ncopy ../../etc/shadow /opt/shadow\n")
        r = airlock("image", "build", "--images", images, "--recipe", recipe)
        expect(r.status == 1 and b"recipe line 2: copy takes a file or folder beside the recipe"
               in r.stderr and b"building" not in r.stderr, "refused at its line", r)
    finally:
        shutil.rmtree(images, ignore_errors=True)
        shutil.rmtree(recipe_dir, ignore_errors=True)


@test
def images_not_there_or_built_on_another_base_are_refused():
    images = private_images()
    try:
        for name in ("nope", "../base", "Probe"):
            r = airlock("run", "--images", images, "--image", name, "echo")
            expect(r.status != 0 and b"no image '%s'" % name.encode() in r.stderr and
                   b"airlock image build --recipe" in r.stderr, "no image %s" % name, r)
        r = airlock("mcp", "--images", images, "--image", "nope", timeout=30)
        expect(r.status == 1 and b"no image 'nope'" in r.stderr, "airlock mcp refuses at start",
               r)
        # registered on an older stock base (an airlock upgrade): say so, and how to rebuild
        write(os.path.join(images, "images", "old"),
              "airlock-image 1\nkey 0123456789abcdef\nbase fedcba9876543210\n"
              "recipe /srv/recipes/old.recipe\ncontents Debian packages: jq\n")
        r = airlock("run", "--images", images, "--image", "old", "echo")
        expect(r.status != 0 and b"built on another stock image (base-fedcba9876543210" in
               r.stderr and b"--recipe /srv/recipes/old.recipe" in r.stderr,
               "stale, with the command that rebuilds it", r)
        r = airlock("image", "prune", "--images", images)
        expect(r.status == 0 and b"removed image name old" in r.stdout and
               not os.path.exists(os.path.join(images, "images", "old")),
               "prune forgets the stale name", r)
    finally:
        shutil.rmtree(images, ignore_errors=True)


if __name__ == "__main__":
    main()
