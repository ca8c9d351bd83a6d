"""airlock's Python starter: the interpreter that runs the user's program.

The agent starts it as the sandbox user, with stdin/stdout/stderr already wired to the agent, and:
  fd 3  lines from the agent: "P<seed>" prepare (any number of times), then "G<seed>" go, or
        "E<seed>": go, taking the run's environment from /run/airlock/env first; or "C<seed>"
        ("K<seed>" with the environment): run SCRIPT as a cell (kept state, below)
  fd 4  we write b"R" once we wait, and after each prepare; b"X<status>\n" at a cell's end

    python3 /usr/lib/airlock/start.py SCRIPT [--preload]

With --preload (the interpreter of a snapshot) the common scientific modules are imported first,
so a program that imports them finds them loaded. Every VM restored from that snapshot shares
this process's memory, so the PRNGs seeded at import time are seeded again from the kernel,
which the agent has just fed fresh host entropy: at prepare (a restored VM, before any request),
else at go. Prepare also runs a little throwaway code, so that an emulated CPU has translated
the interpreter's common paths before the program needs them.

The program then runs as `python3 SCRIPT` would run it: its own __main__ module, sys.argv and
sys.path[0], tracebacks that start at the program's own frames.

Its stdout and stderr write through airlock's _airlock_output module (images/python-output.c)
rather than a write() per print: one buffer for both streams, in a file the agent reads after a
kill, written to the pipes when full, on a switch of stream, after 10 ms, before a fork, exec or
spawn, and at the end. Without the module they are unbuffered (PYTHONUNBUFFERED), as before.
Cells (a call that keeps state or continues one): SCRIPT runs in one __main__ namespace that
every later cell of this interpreter shares, its stdin from /run/airlock/stdin; SystemExit and
exceptions end the cell, not the interpreter; at its end the non-daemon threads it started are
joined, the streams flushed, "X<status>" reported, and the next line waited for: a prepare (the
VM restored from the kept state, fresh entropy), or the next cell. The agent stops every process
of the user before the VM is saved, so a forged report only ends the cell early.

They are put in place at the first prepare (a restored VM, before its call) or at go, not before
the snapshot: in the KVM test host the snapshot's preload took 52 s with them, 33 s without
(2026-12-06; why is not known), and each server there makes its snapshots.
"""
import os
import sys

PRELOAD = ("numpy", "pandas", "matplotlib", "matplotlib.pyplot")

# What the preloaded modules registered with atexit (logging.shutdown, matplotlib's
# Gcf.destroy_all, ...), taken out of atexit's list: _exit() runs them only when the program gave
# them something to do (see _run_preloaded_exitfuncs).
_preloaded_exitfuncs = []
_preloaded_log_handlers = 0


def _install_streams():
    try:
        import _airlock_output

        out, err = _airlock_output.open("/run/airlock/output")
    except (ImportError, OSError):
        return
    import io

    for name, raw in (("stdout", out), ("stderr", err)):
        old = getattr(sys, name)
        new = io.TextIOWrapper(raw, encoding=old.encoding, errors=old.errors, write_through=True)
        setattr(sys, name, new)
        setattr(sys, "__%s__" % name, new)


def _read_line():
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(3, 64)  # a line comes in one write, and the next only after our answer
        if not chunk:
            os._exit(125)  # the agent went away: there is nothing to run
        line += chunk
    return line


def _wait_for_go():
    """Serves prepares until go. Returns (whether the PRNGs were seeded by a prepare, the go
    line)."""
    prepared = False
    os.write(4, b"R")
    line = _read_line()
    while not line.startswith((b"G", b"E", b"C", b"K")):
        if not prepared:
            _install_streams()
        _reseed()
        _warm_up()
        prepared = True
        os.write(4, b"R")
        line = _read_line()
    if line.startswith((b"C", b"K")):
        return prepared, line
    os.close(3)
    os.set_inheritable(4, False)  # kept for the exit report (_exit), not for the program's children
    return prepared, line


def _reseed():
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _warm_up():
    """Compiles and runs a few lines as a program would, on throwaway objects, and prints one
    newline to the real stdout (the agent drops what a prepare prints)."""
    import io

    sink = io.StringIO()
    source = "import sys\nvalues = [i * 2 for i in range(64)]\nprint(sum(values), file=sink)\n"
    exec(compile(source, "<warm-up>", "exec"), {"__name__": "__warm_up__", "sink": sink})
    with open(__file__, "rb") as f:
        f.read()
    print()
    sys.stdout.flush()  # the agent drops it from the pipe, not from the pending buffer


def _apply_run_environment():
    """The run's environment (the proxy, the CA bundle, installed packages): the agent writes it
    as NAME='VALUE' lines after this interpreter started, so it is taken in here, at go ("E")."""
    with open("/run/airlock/env", "rb") as f:
        lines = f.read().decode("utf-8", "replace").splitlines()
    for line in lines:
        name, sep, value = line.partition("=")
        if sep and len(value) >= 2 and value[0] == "'" and value[-1] == "'":
            os.environ[name] = value[1:-1]
            if name == "PYTHONPATH":
                sys.path[1:1] = [p for p in value[1:-1].split(":") if p and p not in sys.path]


def _run(script, with_environment):
    import builtins
    import types

    if with_environment:
        _apply_run_environment()
    main = types.ModuleType("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    _exit(_exec_in(main, script))


def _exec_in(main, script):
    """Runs SCRIPT in the module main as `python3 SCRIPT` would; returns its exit status."""
    with open(script, "rb") as f:
        source = f.read()
    sys.argv = [script]
    sys.path[0] = os.path.dirname(script)
    main.__file__ = script
    try:
        exec(compile(source, script, "exec"), main.__dict__)
    except SystemExit as e:
        return _exit_status(e.code)
    except BaseException as e:  # noqa: B902 - reported like the interpreter reports it
        tb = e.__traceback__
        tb = tb.tb_next if tb is not None else None  # drop this frame: start at the program's
        sys.excepthook(type(e), e.with_traceback(tb), tb)
        return 1
    return 0


def _serve_cells(script, line):
    """Runs cells until the interpreter is ended: line is the first cell's."""
    import builtins
    import threading
    import types

    for fd in (3, 4):  # kept for the next lines and reports, not for the program's children
        os.set_inheritable(fd, False)
    main = types.ModuleType("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    while True:
        if line.startswith((b"C", b"K")):
            if line.startswith(b"K"):
                _apply_run_environment()
            status = _run_cell(main, script, threading)
            os.write(4, b"X%d\n" % status)
        else:  # a prepare: the VM was restored from the kept state and is unique now
            _reseed()
            _warm_up()  # a restored QEMU has translated nothing of the next cell's path
            os.write(4, b"R")
        line = _read_line()


def _run_cell(main, script, threading):
    import io

    before = set(threading.enumerate())
    stdin = os.open("/run/airlock/stdin", os.O_RDONLY | os.O_CLOEXEC)
    os.dup2(stdin, 0)
    os.close(stdin)
    old = sys.stdin
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        io.open(0, "rb", closefd=False), encoding=old.encoding if old else "utf-8",
        errors=old.errors if old else "strict")
    status = _exec_in(main, script)
    for thread in threading.enumerate():  # the cell's own threads end with it, as a program's
        if thread not in before and not thread.daemon and thread is not threading.current_thread():
            thread.join()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or broken stream: nothing more to say
            pass
    return status


def _exit_status(code):
    """What the interpreter does with SystemExit's code."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _exit(status):
    """Ends the process as the interpreter would, without its finalization.

    Tearing down numpy, pandas and matplotlib module by module costs more than the program under
    emulation, and the VM is destroyed next anyway. What a program can observe still happens:
    non-daemon threads are joined, atexit functions run, and the standard streams are flushed.
    Then the streams are closed and the status reported on fd 4, so that the agent can answer
    while the kernel still frees this large process's memory. The program can write on fd 4 too:
    the agent stops every process of the user at any report, so a forged one only ends the program
    early, as exiting would.
    """
    threading = sys.modules.get("threading")
    # (only when there is something to wait for or to call: under emulation even an idle
    # _shutdown costs a millisecond or two, and the preloaded modules import threading)
    if threading is not None and (threading.active_count() > 1 or threading._threading_atexits):
        threading._shutdown()
    import atexit

    atexit._run_exitfuncs()
    _run_preloaded_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or broken stream: nothing more to say
            pass
    for fd in (1, 2):
        try:
            os.close(fd)
        except OSError:  # the program closed it already
            pass
    try:
        os.write(4, b"X%d\n" % status)
    except OSError:  # the program closed fd 4: the agent then learns the status from the exit
        pass
    os._exit(status)


def _preload():
    global _preloaded_log_handlers
    import atexit

    register = atexit.register

    def recording_register(func, *args, **kwargs):
        _preloaded_exitfuncs.append((func, args, kwargs))
        return register(func, *args, **kwargs)

    atexit.register = recording_register
    try:
        for name in PRELOAD:
            try:
                __import__(name)
            except Exception:  # a module that fails to load is simply not preloaded
                pass
    finally:
        atexit.register = register
    for func, _, _ in _preloaded_exitfuncs:
        atexit.unregister(func)
    logging = sys.modules.get("logging")
    _preloaded_log_handlers = len(logging._handlerList) if logging is not None else 0


def _run_preloaded_exitfuncs():
    """Last in, first out, as atexit would, but only those with work: logging's when the program
    added log handlers, matplotlib's when figures are open, any other always. Under emulation
    each costs a millisecond or more even with nothing to do."""
    logging = sys.modules.get("logging")
    helpers = sys.modules.get("matplotlib._pylab_helpers")
    for func, args, kwargs in reversed(_preloaded_exitfuncs):
        if logging is not None and func is logging.shutdown:
            if len(logging._handlerList) == _preloaded_log_handlers:
                continue
        elif helpers is not None and func == helpers.Gcf.destroy_all:
            if not helpers.Gcf.figs:
                continue
        try:
            func(*args, **kwargs)
        except Exception:  # as atexit does: report and go on
            sys.excepthook(*sys.exc_info())


def _start():
    script = sys.argv[1]
    if sys.argv[2:] == ["--preload"]:
        _preload()
    prepared, line = _wait_for_go()
    if not prepared:  # else a prepare has done this since the VM became unique
        _install_streams()
        _reseed()
    if line.startswith((b"C", b"K")):
        _serve_cells(script, line)
    _run(script, line.startswith(b"E"))


_start()
