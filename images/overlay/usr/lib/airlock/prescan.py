"""airlock's advisory pre-scan: reads a program before it runs and lists what looks risky.

It is defence in depth, never the boundary (docs/security.md, "Advisory pre-scan"): anything it
flags can be written so that it does not (getattr, strings, another interpreter). It never runs,
imports or compiles to bytecode the code it reads. The agent runs it in the guest before the
program, at every call and often under emulation, so it imports only what it needs: _ast (not ast)
for Python, re for JavaScript and bash, and writes its JSON by hand.

    python3 -I -S /usr/lib/airlock/prescan.py --language python|javascript|bash
        --mode warn|deny [--deny-imports mod1,mod2] CODEFILE

stdout: one JSON object, {"advisories": [{"rule": str, "line": int, "message": str}, ...]}, at
most MAX_ADVISORIES of them in order of line. Exit 0; 3 in deny mode when there is at least one
advisory; 2, with a message on stderr and nothing on stdout, for a bad command line or a file it
cannot read.
"""
import sys
import time

USAGE = ("usage: prescan.py --language python|javascript|bash --mode warn|deny "
         "[--deny-imports mod1,mod2] CODEFILE")

READ_LIMIT = 16 << 20  # an MCP request line is at most 16 MiB: no program is longer
SCAN_LIMIT = 1 << 20  # bytes looked at line by line or token by token
AST_LIMIT = 256 << 10  # Python parses to about 330 bytes of objects per source byte at worst
MEMORY_LIMIT = 256 << 20  # address space: a MemoryError here, not the guest's OOM killer
TIME_LIMIT = 10.0  # seconds of scanning; every scan is linear, this only bounds the constant
MAX_ADVISORIES = 100
MAX_NAME = 80  # longest module or path quoted in a message

# Modules flagged by default, each with what it gives a program that plain Python lacks. Kept
# small on purpose: os, shutil, multiprocessing and threading are in most ordinary programs, and
# their risky calls are flagged at the call instead.
PYTHON_RISKY = {
    "subprocess": "runs other programs",
    "_posixsubprocess": "runs other programs",
    "pty": "runs programs on a terminal, usually a shell",
    "socket": "opens network connections",
    "_socket": "opens network connections",
    "ctypes": "calls C code, reads and writes raw memory",
}
JS_RISKY = {
    "child_process": "runs other programs",
    "cluster": "starts other processes",
    "net": "opens network connections",
    "dgram": "opens network connections",
    "tls": "opens network connections",
    "vm": "compiles and runs code from strings",
    "worker_threads": "runs code from strings in other threads",
}
# Exact files under /proc, /sys and /dev that ordinary programs open.
HARMLESS_PATHS = {
    "/dev/null", "/dev/zero", "/dev/random", "/dev/urandom", "/dev/stdin", "/dev/stdout",
    "/dev/stderr", "/dev/tty", "/proc/cpuinfo", "/proc/meminfo", "/proc/loadavg",
    "/proc/uptime", "/proc/self/status", "/proc/self/statm",
}
SENSITIVE_ROOTS = ("/proc", "/sys", "/dev")


class ScanIncomplete(Exception):
    """The scan stopped early; its message says why."""


class Advisories:
    """What a scan found so far: kept when the scan stops early."""

    def __init__(self, deny_imports):
        self.items = []
        self.seen = set()
        self.deny_imports = deny_imports
        self.deadline = time.monotonic() + TIME_LIMIT

    def add(self, rule, line, message, column=0):
        key = (rule, line, message)
        if key not in self.seen:
            self.seen.add(key)
            self.items.append((line, column, key))

    def check_time(self):
        if time.monotonic() > self.deadline:
            raise ScanIncomplete("took more than %d s" % TIME_LIMIT)

    def module(self, line, name, risky, shown=None, column=0):
        """An import of `name` (dotted, `shown` in the message): flagged if it or a parent is
        risky or denied. Returns whether it was."""
        parts = name.split(".")
        prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        denied = any(p in self.deny_imports for p in prefixes)
        reason = next((risky[p] for p in prefixes if p in risky), None)
        if denied and reason:
            reason += "; on the deny list"
        elif denied:
            reason = "on the deny list"
        if reason:
            self.add("import", line, "imports %s (%s)" % (short(shown or name), reason),
                     column)
        return bool(reason)

    def sorted(self):
        """By line, then column, then in the order found."""
        return [key for _, _, key in sorted(self.items, key=lambda a: a[:2])][:MAX_ADVISORIES]


def short(text):
    text = str(text)
    return text if len(text) <= MAX_NAME else text[:MAX_NAME] + "..."


# -- Python -----------------------------------------------------------------------------------

RUN_PROGRAM_CALLS = {
    "os.system": "runs a shell command",
    "os.popen": "runs a shell command",
    "pty.spawn": "runs a program on a terminal",
    "asyncio.create_subprocess_exec": "runs another program",
    "asyncio.create_subprocess_shell": "runs a shell command",
}
RUN_PROGRAM_PREFIXES = {
    "os.exec": "replaces this program with another",
    "os.spawn": "runs another program",
    "os.posix_spawn": "runs another program",
    "subprocess.": "runs another program",
    "_posixsubprocess.": "runs another program",
}
DYNAMIC_CODE_CALLS = ("eval", "exec", "compile")
IMPORT_CALLS = ("__import__", "importlib.import_module", "importlib.__import__")
OPEN_CALLS = ("open", "io.open", "os.open", "codecs.open", "pathlib.Path", "pathlib.PosixPath")


def python_scan(source, found):
    import _ast
    import warnings

    warnings.simplefilter("ignore")  # an invalid escape warns, on stderr from 3.12 on

    if len(source) > AST_LIMIT:
        found.add("scan-incomplete", 1, "longer than %d KiB: only import lines checked, in "
                  "the first %d MiB" % (AST_LIMIT >> 10, SCAN_LIMIT >> 20))
        python_scan_lines(source, found)
        return
    try:
        tree = compile(source, "<program>", "exec", _ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as e:
        found.add("syntax", e.lineno or 1, "does not parse: %s" % short(e.msg))
        return
    except ValueError as e:  # null bytes, on 3.11
        found.add("syntax", 1, "does not parse: %s" % short(e))
        return

    nodes = walk(tree, found)
    names = Names(_ast)
    for node in sorted((n for n in nodes if names.binds(n)), key=position):
        names.bind(node)
    for node in nodes:
        if isinstance(node, _ast.Import):
            for alias in node.names:
                found.module(node.lineno, alias.name, PYTHON_RISKY, column=node.col_offset)
        elif isinstance(node, _ast.ImportFrom):
            if node.level or not node.module:
                continue  # relative: the program's own package
            if found.module(node.lineno, node.module, PYTHON_RISKY, column=node.col_offset):
                continue
            for alias in node.names:  # from os import path: the submodule os.path
                if alias.name != "*":
                    found.module(node.lineno, node.module + "." + alias.name, {},
                                 column=node.col_offset)
        elif isinstance(node, _ast.Call):
            python_call(node, names.resolve(node.func), found, _ast)


def walk(tree, found):
    """Every node, without recursion: a program may nest deeper than Python's own stack."""
    nodes, todo = [], [tree]
    while todo:
        node = todo.pop()
        nodes.append(node)
        if len(nodes) & 0xFFF == 0:
            found.check_time()
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, list):
                todo.extend(v for v in value if hasattr(v, "_fields"))
            elif hasattr(value, "_fields"):
                todo.append(value)
    return nodes


def position(node):
    return (node.lineno, node.col_offset)


class Names:
    """What a bare name stands for, as far as a flow-blind look at the module can tell.

    `import os as o` makes o mean os, `from os import system as s` s mean os.system, and
    `run = subprocess.run` run mean subprocess.run; a def, a class or any other assignment makes
    a name the program's own. The last binding in the file wins, whatever its scope.
    """

    def __init__(self, _ast):
        self.ast = _ast
        self.aliases = {}
        self.star = []  # modules of `from m import *`

    def binds(self, node):
        a = self.ast
        return isinstance(node, (a.Import, a.ImportFrom, a.FunctionDef, a.AsyncFunctionDef,
                                 a.ClassDef, a.Assign))

    def bind(self, node):
        a = self.ast
        if isinstance(node, a.Import):
            for alias in node.names:
                if alias.asname:
                    self.aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    self.aliases[top] = top
        elif isinstance(node, a.ImportFrom):
            if node.level or not node.module:
                return
            for alias in node.names:
                if alias.name == "*":
                    self.star.append(node.module)
                else:
                    self.aliases[alias.asname or alias.name] = node.module + "." + alias.name
        elif isinstance(node, a.Assign):
            value = self.dotted(node.value)
            for target in node.targets:
                if isinstance(target, a.Name):
                    self.aliases[target.id] = self.resolve(node.value) if value else None
        else:
            self.aliases[node.name] = None

    def dotted(self, expr):
        """'a.b.c' for a plain chain of names, else None."""
        parts = []
        while isinstance(expr, self.ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, self.ast.Name):
            return None
        parts.append(expr.id)
        return ".".join(reversed(parts))

    def resolve(self, expr):
        """The qualified name an expression stands for ('os.system'), or None."""
        name = self.dotted(expr)
        if name is None:
            return None
        head, _, rest = name.partition(".")
        if head in self.aliases:
            target = self.aliases[head]
            if target is None:
                return None
            name = target + ("." + rest if rest else "")
        elif not rest and self.star:
            for module in self.star:
                if python_call_reason(module + "." + name):
                    return module + "." + name
        for builtin in ("builtins.", "__builtins__."):
            if name.startswith(builtin):
                name = name[len(builtin):]
        if name.startswith("posix."):
            name = "os." + name[len("posix."):]
        return name


def python_call_reason(name):
    if name in RUN_PROGRAM_CALLS:
        return RUN_PROGRAM_CALLS[name]
    for prefix, reason in RUN_PROGRAM_PREFIXES.items():
        if name.startswith(prefix):
            return reason
    return None


def python_call(call, name, found, _ast):
    if name is None:
        return
    line, column = call.lineno, call.col_offset
    first = call.args[0] if call.args else None
    if first is None:
        first = next((k.value for k in call.keywords if k.arg in ("source", "name", "file")),
                     None)
    constant = first if isinstance(first, _ast.Constant) else None
    reason = python_call_reason(name)
    if reason:
        found.add("run-program", line, "calls %s (%s)" % (short(name), reason), column)
    elif name in DYNAMIC_CODE_CALLS:
        if first is not None and not (constant and isinstance(constant.value, (str, bytes))):
            found.add("dynamic-code", line, "%s of a computed string (runs code not written in "
                      "the program)" % name, column)
    elif name in IMPORT_CALLS:
        if constant and isinstance(constant.value, str):
            found.module(line, constant.value, PYTHON_RISKY, column=column)
        elif first is not None:
            found.add("dynamic-import", line, "%s of a computed name (imports a module not "
                      "named in the program)" % name, column)
    elif name in OPEN_CALLS and constant:
        path = sensitive_path(constant.value)
        if path:
            found.add("sensitive-path", line, "opens %s (a kernel or device file)" % short(path),
                      column)


def sensitive_path(value):
    """The normalized path if `value` names a file under /proc, /sys or /dev, else None."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value.startswith("/"):
        return None
    parts = []
    for part in value.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    path = "/" + "/".join(parts)
    if path in HARMLESS_PATHS:
        return None
    if any(path == root or path.startswith(root + "/") for root in SENSITIVE_ROOTS):
        return path
    return None


def python_scan_lines(source, found):
    """Imports and constant __import__s by pattern, for a program too long to parse."""
    import re

    text = source[:SCAN_LIMIT].decode("utf-8", "replace")
    statements = re.compile(
        r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import\b|import[ \t]+([\w., \t]+))", re.M)
    calls = re.compile(r"\b(?:__import__|import_module)\(\s*['\"]([\w.]+)['\"]")
    for pattern in (statements, calls):
        line, counted = 1, 0
        for m in pattern.finditer(text):
            found.check_time()
            line += text.count("\n", counted, m.start())
            counted = m.start()
            for group in m.groups():
                for item in (group or "").split(","):
                    words = item.split()
                    if words:
                        found.module(line, words[0], PYTHON_RISKY)


# -- JavaScript -------------------------------------------------------------------------------

# After one of these a '/' starts a regular expression; after anything else it divides.
JS_REGEX_AFTER_WORDS = {"return", "typeof", "instanceof", "in", "of", "new", "delete", "void",
                        "throw", "case", "do", "else", "yield", "await"}
JS_GLOBALS = ("globalThis", "window", "global", "self")
JS_PATTERN_WORDS = {"require", "import", "eval", "Function", "binding", "_linkedBinding"}


def js_tokens(text, found, re):
    """(kind, value, line) for each token: 'id', 'str' (a constant string's value), 'tpl' (a
    template with substitutions), 'num', 'regex' or 'punct'. Comments are dropped. An
    identifier is [$_A-Za-z] or any non-ASCII character, then digits too: spelt as the ASCII it
    is not, since a class of \u0080-\uffff costs 10 ms to compile."""
    token = re.compile(r"""
        (?P<space>[\s\ufeff]+)
      | (?P<line_comment>//[^\n]*)
      | (?P<block_comment>/\*[\s\S]*?(?:\*/|\Z))
      | (?P<str>'(?:[^'\\\n]|\\[\s\S])*'?|"(?:[^"\\\n]|\\[\s\S])*"?)
      | (?P<num>\.?\d[\w.]*)
      | (?P<id>[^\x00-\x23\x25-\x40\x5b-\x5e\x60\x7b-\x7f]
               [^\x00-\x23\x25-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]*)
      | (?P<tick>`)
      | (?P<punct>[\s\S])
    """, re.X)
    template_part = re.compile(r"(?:[^`\\$]|\\[\s\S]?|\$(?!\{))*(`|\$\{|\Z)")
    regex = re.compile(r"/(?:[^/\\\[\n]|\\.|\[(?:[^\]\\\n]|\\.)*\]?)+/?[A-Za-z]*")
    braces = []  # per open ${: the brace depth inside it
    pos, line, last = 0, 1, None
    if text.startswith("#!"):
        pos = text.find("\n") if "\n" in text else len(text)
    count = 0
    while pos < len(text):
        count += 1
        if count & 0xFFF == 0:
            found.check_time()
        start_line = line
        if text[pos] == "/" and text[pos:pos + 2] not in ("//", "/*") and (
                last is None or (last[0] == "punct" and last[1] not in ")]}")
                or (last[0] == "id" and last[1] in JS_REGEX_AFTER_WORDS)):
            m = regex.match(text, pos)
            if m:
                pos = m.end()
                last = ("regex", m.group(), start_line)
                yield last
                continue
        if text[pos] == "}" and braces and braces[-1] == 0:
            braces.pop()
            _, end = js_template_rest(text, pos + 1, braces, template_part)
            line += text.count("\n", pos, end)
            pos = end
            last = ("tpl", None, start_line)
            yield last
            continue
        m = token.match(text, pos)
        kind, value = m.lastgroup, m.group()
        if kind == "tick":
            end_kind, m_end = js_template_rest(text, pos + 1, braces, template_part)
            value = text[pos + 1:m_end - 1] if end_kind == "`" else None
            # a template with escapes is constant too, but its value is not its text
            kind = "str" if value is not None and "\\" not in value else "tpl"
        else:
            m_end = m.end()
            if kind == "str":
                value = value[1:-1] if len(value) > 1 and value[-1] == value[0] else value[1:]
        line += text.count("\n", pos, m_end)
        pos = m_end
        if kind in ("space", "line_comment", "block_comment"):
            continue
        if kind == "punct" and braces:
            if value == "{":
                braces[-1] += 1
            elif value == "}":
                braces[-1] -= 1
        last = (kind, value, start_line)
        yield last


def js_template_rest(text, pos, braces, template_part):
    """Scans a template from pos to its end or its next ${. Returns (what ended it, position)."""
    m = template_part.match(text, pos)
    end = m.group(1)
    if end == "${":
        braces.append(0)
    return end or "eof", m.end()


def javascript_scan(source, found):
    import re

    text = source[:SCAN_LIMIT].decode("utf-8", "replace")
    window = []  # the last five tokens
    since = 5  # tokens since the last one a pattern starts with
    for tok in js_tokens(text, found, re):
        window.append(tok)
        if len(window) > 5:
            del window[0]
        since = 0 if tok[0] == "id" and tok[1] in JS_PATTERN_WORDS else since + 1
        if since < 5 or tok[0] == "str":
            javascript_patterns(window, found)


def js_is(tok, kind, value=None):
    return tok is not None and tok[0] == kind and (value is None or tok[1] == value)


JS_COMPUTED_IMPORT = "%s of a computed name (loads a module not named in the program)"


def javascript_patterns(window, found):
    """The patterns that end at the newest token, t1; t5 is four tokens before it."""
    t5, t4, t3, t2, t1 = [None] * (5 - len(window)) + window
    line = t1[2]
    for call in ("require", "import"):  # require('x'), import('x'), require(x)
        if js_is(t3, "id", call) and js_is(t2, "punct", "(") and not js_is(t4, "punct", "."):
            if not js_is(t1, "str") and not js_is(t1, "punct", ")"):
                found.add("dynamic-import", line, JS_COMPUTED_IMPORT % call)
        if (js_is(t4, "id", call) and js_is(t3, "punct", "(") and js_is(t2, "str")
                and not js_is(t5, "punct", ".")):
            if js_is(t1, "punct", ")") or js_is(t1, "punct", ","):
                found.module(t2[2], js_module(t2[1]), JS_RISKY, t2[1])
            else:  # require('a' + b)
                found.add("dynamic-import", line, JS_COMPUTED_IMPORT % call)
    # import ... from 'x', export ... from 'x', import 'x'
    if js_is(t1, "str") and (js_is(t2, "id", "from") or (
            js_is(t2, "id", "import") and not js_is(t3, "punct", "."))):
        found.module(line, js_module(t1[1]), JS_RISKY, t1[1])
    # eval(, Function(, new Function(, and globalThis.eval( or window.eval(, not obj.eval(
    if js_is(t1, "punct", "(") and js_is(t2, "id") and t2[1] in ("eval", "Function"):
        if not js_is(t3, "punct", ".") or (js_is(t4, "id") and t4[1] in JS_GLOBALS):
            what = "eval" if t2[1] == "eval" else "new Function"
            found.add("dynamic-code", t2[2], "%s (runs code from a string)" % what)
    # process.binding(, process._linkedBinding(
    if (js_is(t1, "punct", "(") and js_is(t2, "id") and t2[1] in ("binding", "_linkedBinding")
            and js_is(t3, "punct", ".") and js_is(t4, "id", "process")):
        found.add("process-binding", line, "process.%s (reaches Node's internals directly)"
                  % t2[1])


def js_module(name):
    """A specifier as a dotted name: 'node:fs/promises' is fs.promises, a submodule of fs."""
    if name.startswith("node:"):
        name = name[len("node:"):]
    return name.replace("/", ".")


# -- bash -------------------------------------------------------------------------------------

SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "ash"}
NETCATS = {"nc", "ncat", "netcat", "socat"}
# Words before the command itself: `sudo -u x rm`, `FOO=1 nc`, `then eval`, `$(curl`.
PREFIX_WORDS = {"sudo", "exec", "nohup", "time", "then", "do", "else", "elif", "if", "while",
                "until", "command", "builtin", "env", "xargs", "!", "{", "(", "$(", "`", "doas"}
RM_TARGETS = {"/", "/*", "/.*", "~", "~/", "~/*", "$HOME", "$HOME/", "$HOME/*", "${HOME}",
              "${HOME}/", "${HOME}/*"}
SYSTEM_DIRS = {"bin", "boot", "etc", "home", "lib", "lib64", "opt", "root", "sbin", "usr",
               "var"}


def bash_scan(source, found):
    import re

    text = source[:SCAN_LIMIT].decode("utf-8", "replace")
    lists = re.compile(r"&&|\|\||;;?|&(?![>&])|\n")
    pipes = re.compile(r"(?<![|>])\|(?![|&])")
    dev_tcp = re.compile(r"/dev/(tcp|udp)/")
    fetch_sub = re.compile(r"(?:<\(|\$\(|`)\s*(?:\S*/)?(curl|wget)\b")
    for line_no, line in bash_lines(text, found):
        m = dev_tcp.search(line)
        if m:
            found.add("dev-tcp", line_no, "/dev/%s/ (opens a network connection)" % m.group(1))
        for command_list in lists.split(line):
            stages = [bash_command(s) for s in pipes.split(command_list)]
            bash_pipeline(stages, line_no, found, fetch_sub)


def bash_lines(text, found):
    """(line number, logical line without its comment), continuation lines joined."""
    pending, start = "", 1
    for number, raw in enumerate(text.split("\n"), 1):
        if number & 0x3FF == 0:
            found.check_time()
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        line = pending + raw
        pending = ""
        if "#" in line:
            line = bash_strip_comment(line)
        yield start, line
    if pending:
        yield start, bash_strip_comment(pending)


def bash_strip_comment(line):
    """The line up to a '#' that starts a word outside quotes."""
    quote, i = None, 0
    while i < len(line):
        c = line[i]
        if c == "\\" and quote != "'":
            i += 2  # an escaped quote or '#' is a plain character
            continue
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t;|&("):
            return line[:i]
        i += 1
    return line


def bash_command(stage):
    """(command name, its words after the name, the stage's text)."""
    words = stage.replace("$(", " $( ").replace("`", " ` ").replace("(", " ( ").split()
    i = 0
    while i < len(words):
        word = words[i]
        if word in PREFIX_WORDS or (i and words[i - 1] in ("sudo", "env", "xargs", "doas")
                                    and word.startswith("-")):
            i += 1
        elif "=" in word and word.split("=")[0].isidentifier():
            i += 1
        else:
            break
    if i >= len(words):
        return ("", [], stage)
    name = words[i].strip("'\"").rsplit("/", 1)[-1]
    return (name, [w.strip("'\"") for w in words[i + 1:]], stage)


def bash_pipeline(stages, line, found, fetch_sub):
    fetch = decode = None  # an earlier stage that downloads, or decodes base64
    for name, args, text in stages:
        if name in SHELLS or name in ("source", "."):
            if fetch:
                found.add("pipe-to-shell", line, "%s piped into %s (runs downloaded code)"
                          % (fetch, name))
            elif decode:
                found.add("pipe-to-shell", line, "base64 -d piped into %s (runs hidden code)"
                          % name)
            m = fetch_sub.search(text)
            if m:
                found.add("pipe-to-shell", line, "%s runs the output of %s (runs downloaded "
                          "code)" % (name, m.group(1)))
        elif name in ("curl", "wget"):
            fetch = fetch or name
        elif name == "base64" and any(a in ("-d", "-D", "--decode") for a in args):
            decode = name
        elif name in NETCATS:
            found.add("netcat", line, "runs %s (raw network connections)" % name)
        elif name == "rm":
            bash_rm(args, line, found)
        elif name == "eval" and any("$" in a or "`" in a for a in args):
            found.add("dynamic-code", line, "eval of a variable (runs text as code)")


def bash_rm(args, line, found):
    flags = [a for a in args if a.startswith("-")]
    targets = [a for a in args if not a.startswith("-")]
    recursive = any(f in ("--recursive", "-r", "-R") or (
        not f.startswith("--") and ("r" in f or "R" in f)) for f in flags)
    for target in targets:
        top = target.rstrip("/*").lstrip("/")
        if target in RM_TARGETS or (target.startswith("/") and top in SYSTEM_DIRS):
            if recursive:
                found.add("destructive-rm", line, "rm -r %s (deletes a whole tree of the "
                          "system or home)" % short(target))
                return
    if "--no-preserve-root" in flags:
        found.add("destructive-rm", line, "rm --no-preserve-root (may delete everything)")


# -- the command line -------------------------------------------------------------------------

SCANNERS = {"python": python_scan, "javascript": javascript_scan, "bash": bash_scan}


def parse_args(argv):
    """The options as a dict; a ValueError whose message is the problem."""
    opts = {"language": None, "mode": None, "deny": set(), "file": None}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--language", "--mode", "--deny-imports"):
            if i + 1 >= len(argv):
                raise ValueError("%s needs a value" % arg)
            value = argv[i + 1]
            i += 2
            if arg == "--language":
                if value not in SCANNERS:
                    raise ValueError("unknown language %r" % value)
                opts["language"] = value
            elif arg == "--mode":
                if value not in ("warn", "deny"):
                    raise ValueError("unknown mode %r" % value)
                opts["mode"] = value
            else:
                opts["deny"].update(js_module(m.strip()) for m in value.split(",") if m.strip())
        elif arg.startswith("-") and arg != "-" and opts["file"] is None and arg != "--":
            raise ValueError("unknown option %r" % arg)
        else:
            if arg == "--":
                i += 1
                arg = argv[i] if i < len(argv) else None
            if opts["file"] is not None or arg is None:
                raise ValueError("exactly one CODEFILE")
            opts["file"] = arg
            i += 1
    if not opts["language"] or not opts["mode"] or not opts["file"]:
        raise ValueError("--language, --mode and CODEFILE are required")
    return opts


def json_string(text):
    out = ['"']
    for c in text:
        o = ord(c)
        if c == '"' or c == "\\":
            out.append("\\" + c)
        elif 0x20 <= o < 0x7F:
            out.append(c)
        elif o > 0xFFFF:
            o -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 + (o >> 10), 0xDC00 + (o & 0x3FF)))
        else:
            out.append("\\u%04x" % o)
    out.append('"')
    return "".join(out)


def to_json(advisories):
    items = ['{"rule": %s, "line": %d, "message": %s}' % (json_string(r), line, json_string(m))
             for r, line, m in advisories]
    return '{"advisories": [' + ", ".join(items) + "]}"


def limit_memory():
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > MEMORY_LIMIT:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, hard))
    except (ImportError, ValueError, OSError):
        pass  # a bound we could not set: the input limits still hold


def main(argv):
    try:
        opts = parse_args(argv)
    except ValueError as e:
        sys.stderr.write("prescan: %s\n%s\n" % (e, USAGE))
        return 2
    try:
        with open(opts["file"], "rb") as f:
            source = f.read(READ_LIMIT + 1)
    except OSError as e:
        sys.stderr.write("prescan: cannot read %s: %s\n" % (opts["file"], e.strerror or e))
        return 2
    limit_memory()
    found = Advisories(opts["deny"])
    try:
        if len(source) > READ_LIMIT:
            raise ScanIncomplete("longer than %d MiB" % (READ_LIMIT >> 20))
        if len(source) > SCAN_LIMIT and opts["language"] != "python":
            found.add("scan-incomplete", 1, "only the first %d MiB was scanned"
                      % (SCAN_LIMIT >> 20))
        SCANNERS[opts["language"]](source, found)
    except ScanIncomplete as e:
        found.add("scan-incomplete", 1, "not fully scanned: %s" % e)
    except RecursionError:
        found.add("scan-incomplete", 1, "not fully scanned: nested too deeply")
    except MemoryError:
        found.add("scan-incomplete", 1, "not fully scanned: too large to hold in memory")
    except Exception as e:  # never a traceback instead of the one JSON object
        found.add("scan-incomplete", 1, "not fully scanned: %s" % short(type(e).__name__))
    advisories = found.sorted()
    sys.stdout.write(to_json(advisories) + "\n")
    sys.stdout.flush()
    return 3 if opts["mode"] == "deny" and advisories else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
