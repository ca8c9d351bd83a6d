"""The advisory pre-scan (images/overlay/usr/lib/airlock/prescan.py), run as the agent runs it.

Host-side, stdlib only, no VM:  python3 test/unit/test_prescan.py [-v] [TestClass.test_name]
Each test writes a program to a temporary file and runs `python3 -I -S prescan.py ...` on it.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PRESCAN = os.path.join(HERE, "..", "..", "images", "overlay", "usr", "lib", "airlock",
                       "prescan.py")
SUFFIX = {"python": ".py", "javascript": ".js", "bash": ".sh"}


class Scan(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def write(self, language, code):
        path = os.path.join(self.dir.name, "program" + SUFFIX[language])
        with open(path, "wb") as f:
            f.write(code if isinstance(code, bytes) else code.encode())
        return path

    def run_prescan(self, language, code, mode="warn", deny=None, timeout=60):
        """(exit status, advisories or None, stderr)."""
        argv = [sys.executable, "-I", "-S", PRESCAN, "--language", language, "--mode", mode]
        if deny:
            argv += ["--deny-imports", deny]
        argv.append(self.write(language, code))
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, cwd=self.dir.name)
        advisories = None
        if proc.stdout:
            report = json.loads(proc.stdout)  # exactly one object, nothing around it
            self.assertEqual(list(report), ["advisories"])
            advisories = report["advisories"]
            for a in advisories:
                self.assertEqual(sorted(a), ["line", "message", "rule"])
                self.assertIsInstance(a["line"], int)
        return proc.returncode, advisories, proc.stderr.decode()

    def scan(self, language, code, **kwargs):
        """The advisories of a scan that must succeed, as (rule, line) pairs and messages."""
        rc, advisories, err = self.run_prescan(language, code, **kwargs)
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "")
        self.messages = [a["message"] for a in advisories]
        return [(a["rule"], a["line"]) for a in advisories]

    def assertFlags(self, language, code, expected, **kwargs):
        self.assertEqual(self.scan(language, code, **kwargs), expected)

    def assertClean(self, language, code, **kwargs):
        self.assertEqual(self.scan(language, code, **kwargs), [])


class Python(Scan):
    def test_risky_imports_are_flagged(self):
        code = "import subprocess\nimport socket\nimport ctypes.util\nfrom pty import spawn\n"
        self.assertFlags("python", code, [("import", 1), ("import", 2), ("import", 3),
                                          ("import", 4)])
        self.assertIn("imports subprocess (runs other programs)", self.messages)

    def test_ordinary_imports_are_not(self):
        self.assertClean("python", "import os, sys, json, math, shutil, multiprocessing\n"
                         "from os import path\n")

    def test_deny_imports_match_a_module_and_its_submodules(self):
        code = ("import requests.adapters\n"
                "from requests import get\n"
                "from urllib import request\n"
                "import urllib.parse\n"
                "__import__('requests')\n"
                "import importlib\nimportlib.import_module('urllib.request')\n")
        self.assertFlags("python", code, [("import", 1), ("import", 2), ("import", 3),
                                          ("import", 5), ("import", 7)],
                         deny="requests,urllib.request")
        self.assertIn("imports urllib.request (on the deny list)", self.messages)

    def test_constant_dynamic_imports_of_risky_modules(self):
        code = "m = __import__('subprocess')\nfrom importlib import import_module as im\n" \
               "im('ctypes')\n"
        self.assertFlags("python", code, [("import", 1), ("import", 3)])

    def test_computed_imports(self):
        code = "import importlib\n__import__(name)\nimportlib.import_module('a' + b)\n"
        self.assertFlags("python", code, [("dynamic-import", 2), ("dynamic-import", 3)])

    def test_calls_that_run_programs(self):
        code = ("import os\nos.system('ls')\nos.popen('ls')\nos.execv('/bin/sh', [])\n"
                "os.spawnlp(0, 'ls', 'ls')\nos.posix_spawn('/bin/ls', [], {})\n")
        self.assertFlags("python", code, [("run-program", n) for n in range(2, 7)])

    def test_aliases_are_followed(self):
        code = ("import os as o\no.system('id')\n"
                "from os import system as s\ns('id')\n"
                "import subprocess as sp\nrun = sp.run\nrun(['id'])\n"
                "from subprocess import *\ncheck_output(['id'])\n")
        self.assertFlags("python", code, [("run-program", 2), ("run-program", 4),
                                          ("import", 5), ("run-program", 7),
                                          ("import", 8), ("run-program", 9)])

    def test_a_name_the_program_rebinds_is_its_own(self):
        self.assertClean("python", "from re import compile\ncompile(pattern)\n"
                         "def system(x):\n    return x\nsystem(cmd)\n")

    def test_dynamic_code(self):
        code = "eval(text)\nexec(open('f').read())\ncompile(src, 'f', 'exec')\n" \
               "import builtins\nbuiltins.eval(x)\n"
        self.assertFlags("python", code, [("dynamic-code", 1), ("dynamic-code", 2),
                                          ("dynamic-code", 3), ("dynamic-code", 5)])

    def test_constant_code_is_not_dynamic(self):
        self.assertClean("python", "eval('1 + 1')\nexec('x = 2')\n")

    def test_sensitive_paths(self):
        code = ("open('/proc/self/mem', 'rb')\nopen('/dev/../sys/kernel/x')\n"
                "import os\nos.open(b'/dev/sda', 0)\nopen(file='/proc/1/environ')\n")
        self.assertFlags("python", code, [("sensitive-path", 1), ("sensitive-path", 2),
                                          ("sensitive-path", 4), ("sensitive-path", 5)])
        self.assertIn("opens /sys/kernel/x (a kernel or device file)", self.messages)

    def test_harmless_device_files_and_computed_paths(self):
        self.assertClean("python", "open('/dev/null', 'w')\nopen('/proc/cpuinfo')\n"
                         "open('/procfs/x')\nopen(path)\nopen('/proc/' + pid)\n")

    def test_plain_numpy_and_pandas_code(self):
        code = '''import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
from collections import defaultdict
import re, os, json

df = pd.DataFrame({"a": np.arange(10), "b": np.random.rand(10)})
df["c"] = df.eval("a + b")
pattern = re.compile(r"\\d+")
print(df.describe(), pattern.findall("a1b22"))
result = df.query("a > 3").groupby("a").agg({"b": "mean"})
os.makedirs("out", exist_ok=True)
with open(os.path.join("out", "r.json"), "w") as f:
    json.dump(result.to_dict(), f)
plt.plot(df["a"], df["b"])
plt.savefig("out/plot.png")
'''
        self.assertClean("python", code)

    def test_a_syntax_error_is_an_advisory(self):
        self.assertFlags("python", "x = 1\ndef f(:\n", [("syntax", 2)])
        self.assertFlags("python", b"x = 1\x00\n", [("syntax", 1)])
        self.assertFlags("python", b"x = '\xff'\n", [("syntax", 1)])

    def test_deep_nesting(self):
        self.assertFlags("python", "(" * 100000, [("syntax", 1)])
        self.assertFlags("python", "x = " + "x+" * 100000 + "x\n", [("scan-incomplete", 1)])
        self.assertFlags("python", "-" * 100000 + "1\n", [("scan-incomplete", 1)])

    def test_a_ten_megabyte_program(self):
        code = "import subprocess\n" + "x = foo(1, 'a')\n" * (10 << 16)
        start = time.monotonic()
        self.assertFlags("python", code, [("scan-incomplete", 1), ("import", 1)])
        self.assertLess(time.monotonic() - start, 20)

    def test_the_program_is_never_run(self):
        marker = os.path.join(self.dir.name, "ran")
        code = ("open(%r, 'w').write('x')\n"
                "import os\nos.system('touch %s')\n"
                "x = 1 if open(%r, 'w') else 2\n" % (marker, marker, marker))
        self.scan("python", code)
        self.assertFalse(os.path.exists(marker))


class JavaScript(Scan):
    def test_risky_modules(self):
        code = ("const cp = require('child_process');\n"
                "import net from 'node:net';\n"
                "import { Worker } from \"worker_threads\";\n"
                "const vm = await import('vm');\n"
                "export { x } from 'dgram';\n"
                "import 'tls';\n")
        self.assertFlags("javascript", code, [("import", n) for n in range(1, 7)])
        self.assertIn("imports node:net (opens network connections)", self.messages)

    def test_comments_strings_and_regexes_are_not_code(self):
        code = ("// require('child_process')\n"
                "/* import net from 'net'\n eval(x) */\n"
                "const s = \"require('vm')\" + 'eval(x)';\n"
                "const r = /require\\('net'\\)/g, d = 4 / 2 / 1;\n"
                "const t = `eval(${a}) require('net')`;\n"
                "obj.eval(1); x.require('net');\n")
        self.assertClean("javascript", code)

    def test_code_inside_a_template_substitution(self):
        self.assertFlags("javascript", "const t = `a ${ {k: 1}.k } ${ require('net') }`;\n",
                         [("import", 1)])

    def test_deny_imports(self):
        code = "const fs = require('fs/promises');\nimport axios from 'axios';\n" \
               "const p = require('path');\n"
        self.assertFlags("javascript", code, [("import", 1), ("import", 2)],
                         deny="fs,axios")

    def test_dynamic_code_and_imports(self):
        code = ("eval(code);\nglobalThis.eval(code);\nnew Function('a', body);\n"
                "const m = require(name);\nrequire(`./${x}`);\nimport(spec);\n")
        self.assertFlags("javascript", code, [("dynamic-code", 1), ("dynamic-code", 2),
                                              ("dynamic-code", 3), ("dynamic-import", 4),
                                              ("dynamic-import", 5), ("dynamic-import", 6)])

    def test_process_binding(self):
        self.assertFlags("javascript", "process.binding('spawn_sync');\n",
                         [("process-binding", 1)])

    def test_ordinary_node_code(self):
        self.assertClean("javascript", "const fs = require('fs');\n"
                         "const path = require('node:path');\n"
                         "import { readFile } from 'fs/promises';\n"
                         "const xs = [1, 2, 3].map(v => v * 2).filter(v => v / 2 > 1);\n"
                         "console.log(JSON.stringify(xs), path.join('a', 'b'));\n")

    def test_pathological_input(self):
        self.assertClean("javascript", "(" * 100000)
        self.assertClean("javascript", "`${" * 100000)
        self.assertClean("javascript", "'unterminated\n\"also\n/* open comment")
        self.assertFlags("javascript", "x;\n" * (4 << 20), [("scan-incomplete", 1)])


class Bash(Scan):
    def test_download_piped_to_a_shell(self):
        code = ("curl -fsSL https://example.com/i.sh | sudo bash\n"
                "wget -qO- https://example.com/i | tee log | sh\n"
                "bash <(curl -s https://example.com/i)\n"
                "sh -c \"$(wget -qO- https://example.com/i)\"\n"
                "echo aGkK | base64 -d | bash\n")
        self.assertFlags("bash", code, [("pipe-to-shell", n) for n in range(1, 6)])

    def test_destructive_rm(self):
        code = ("rm -rf /\nsudo rm -fr \"$HOME\"\nrm -r -f /usr\nrm -rf /*\n"
                "rm -rf \\\n  /\nrm --no-preserve-root -rf /x\n")
        self.assertFlags("bash", code, [("destructive-rm", n) for n in (1, 2, 3, 4, 5, 7)])

    def test_ordinary_rm(self):
        self.assertClean("bash", "rm -rf ./build\nrm -rf /tmp/work\nrm /etc\nrm -f \"$HOME/x\"\n")

    def test_network_tools(self):
        code = "exec 3<>/dev/tcp/10.0.0.1/80\nnc -l 4444\nfoo | ncat host 1\nsocat - TCP:h:1\n"
        self.assertFlags("bash", code, [("dev-tcp", 1), ("netcat", 2), ("netcat", 3),
                                        ("netcat", 4)])

    def test_eval_of_a_variable(self):
        self.assertFlags("bash", "eval \"$cmd\"\neval `cat f`\neval echo hi\n",
                         [("dynamic-code", 1), ("dynamic-code", 2)])

    def test_comments_are_not_code(self):
        self.assertClean("bash", "# curl x | sh\necho hi # nc -l 1\necho '# not' ; echo $#\n"
                         "echo \"nc host\"\nls ./nc.txt\necho \\# nc x\n")
        self.assertFlags("bash", "echo \"a \\\" # b\" ; nc -l 1\n", [("netcat", 1)])

    def test_the_program_is_never_run(self):
        marker = os.path.join(self.dir.name, "ran")
        self.scan("bash", "touch %s\n" % marker)
        self.scan("javascript", "require('fs').writeFileSync(%r, 'x');\n" % marker)
        self.assertFalse(os.path.exists(marker))


class Contract(Scan):
    def test_deny_mode_exits_3_with_advisories(self):
        rc, advisories, _ = self.run_prescan("python", "import subprocess\n", mode="deny")
        self.assertEqual(rc, 3)
        self.assertEqual([a["rule"] for a in advisories], ["import"])

    def test_deny_mode_exits_0_without(self):
        rc, advisories, _ = self.run_prescan("python", "print(1)\n", mode="deny")
        self.assertEqual((rc, advisories), (0, []))

    def test_warn_mode_exits_0_with_advisories(self):
        rc, advisories, _ = self.run_prescan("bash", "nc -l 1\n")
        self.assertEqual((rc, len(advisories)), (0, 1))

    def test_an_unreadable_file_exits_2(self):
        proc = subprocess.run([sys.executable, "-I", "-S", PRESCAN, "--language", "python",
                               "--mode", "warn", os.path.join(self.dir.name, "missing.py")],
                              capture_output=True)
        self.assertEqual((proc.returncode, proc.stdout), (2, b""))
        self.assertIn(b"cannot read", proc.stderr)

    def test_a_bad_command_line_exits_2(self):
        path = self.write("python", "")
        for argv in ([], ["--language", "ruby", "--mode", "warn", path],
                     ["--language", "python", "--mode", "block", path],
                     ["--language", "python", "--mode", "warn"],
                     ["--language", "python", "--mode", "warn", path, path]):
            proc = subprocess.run([sys.executable, "-I", "-S", PRESCAN] + argv,
                                  capture_output=True)
            self.assertEqual((proc.returncode, proc.stdout), (2, b""), argv)

    def test_at_most_100_advisories_in_line_order(self):
        code = "".join("import socket  # %d\n" % i for i in range(300))
        rc, advisories, _ = self.run_prescan("python", code)
        self.assertEqual(rc, 0)
        self.assertEqual([a["line"] for a in advisories], list(range(1, 101)))

    def test_messages_are_json_whatever_the_names(self):
        code = "__import__('sub\\u00e9\\U0001f600\"\\\\x')\n"
        self.scan("python", code, deny="sub\u00e9\U0001f600\"\\x")
        self.assertEqual(self.messages, ["imports sub\u00e9\U0001f600\"\\x (on the deny list)"])


if __name__ == "__main__":
    unittest.main()
