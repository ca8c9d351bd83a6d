/* _airlock_output: the Python starter's stdout and stderr, fast and never lost.
 *
 * Unbuffered, a print is two write()s and wakes the agent: 200,000 lines took 3.5 s to /dev/null
 * and 30 s to the agent on tcg. Here the bytes of both streams go to one pending buffer instead,
 * written to the stream's pipe when
 *   - it is full, or the other stream is written (so stdout and stderr keep their order),
 *   - it has waited FLUSH_AFTER_MS (a thread of our own, holding no GIL: output shows while the
 *     program runs, even one stuck in C code),
 *   - the program flushes, forks, execs or spawns (an audit hook and pthread_atfork: a child's
 *     output never overtakes its parent's), and when the starter ends the program.
 * The buffer is a file the agent shares (struct al_pending_output, pending-output.h): whatever a
 * kill, a crash or os._exit leaves in it, the agent sends after the program's end (exec.c).
 *
 * A forked child writes straight to its fd: the buffer is the parent's.
 *
 * Built inside the base tree against Debian's Python headers (images/rootfs-base.sh); the starter
 * falls back to unbuffered streams without it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "pending-output.h"

#define AL_STREAM_STDOUT 1 /* as agent/proto.h numbers them */
#define AL_STREAM_STDERR 2

#define FLUSH_AFTER_MS 10

static struct al_pending_output *pending; /* NULL: not opened */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static struct timespec first_pending; /* when the oldest pending byte came */
static int direct;                    /* in a forked child: straight to the fd */

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? errno : EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* With lock held: writes what is pending to its stream's fd. */
static int flush_locked(void)
{
	uint32_t len = pending->len;
	if (len == 0)
		return 0;
	int rc = write_all(pending->stream == AL_STREAM_STDERR ? 2 : 1, pending->data, len);
	/* written, or failed as an unbuffered write would have: it is not pending any more */
	atomic_store_explicit((_Atomic uint32_t *)&pending->len, 0, memory_order_release);
	return rc;
}

static int flush_all(void)
{
	if (!pending || direct)
		return 0;
	pthread_mutex_lock(&lock);
	int rc = flush_locked();
	pthread_mutex_unlock(&lock);
	return rc;
}

static long ms_since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

/* The thread that writes what has waited FLUSH_AFTER_MS; asleep while nothing is pending. */
static void *flusher(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&lock);
	for (;;) {
		while (pending->len == 0)
			pthread_cond_wait(&wake, &lock);
		long waited = ms_since(&first_pending);
		if (waited < FLUSH_AFTER_MS) {
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			long ns = until.tv_nsec + (FLUSH_AFTER_MS - waited) * 1000000L;
			until.tv_sec += ns / 1000000000L;
			until.tv_nsec = ns % 1000000000L;
			pthread_cond_timedwait(&wake, &lock, &until);
			continue;
		}
		flush_locked();
	}
	return NULL;
}

static int fd_of(uint32_t stream)
{
	return stream == AL_STREAM_STDERR ? 2 : 1;
}

/* With lock held: whether appending n bytes of stream means writing first (a switch of stream,
 * no room, or as much as the buffer holds). */
static int needs_write(uint32_t stream, size_t n)
{
	return n >= AL_PENDING_OUTPUT_SIZE ||
	       (pending->len > 0 &&
		(pending->stream != stream || n > AL_PENDING_OUTPUT_SIZE - pending->len));
}

/* With lock held: writes what must go first, then adds the bytes (or writes them through when
 * they are as large as the buffer). Returns 0 or an errno. */
static int append_locked(uint32_t stream, const uint8_t *p, size_t n)
{
	int rc = 0;
	if (pending->len > 0 &&
	    (pending->stream != stream || n > AL_PENDING_OUTPUT_SIZE - pending->len))
		rc = flush_locked();
	if (rc == 0 && n >= AL_PENDING_OUTPUT_SIZE)
		return write_all(fd_of(stream), p, n);
	if (rc == 0) {
		uint32_t len = pending->len;
		pending->stream = stream;
		memcpy(pending->data + len, p, n);
		atomic_store_explicit((_Atomic uint32_t *)&pending->len, len + (uint32_t)n,
				      memory_order_release);
		if (len == 0) {
			clock_gettime(CLOCK_MONOTONIC, &first_pending);
			pthread_cond_signal(&wake);
		}
	}
	return rc;
}

/* Appends bytes for stream; the caller holds the GIL. Any write (a full pipe blocks) is made
 * without it, and lock is never held while waiting for the GIL: a thread that holds lock and
 * waits for the GIL, while the GIL's holder waits for lock, would hang both. Returns 0 or an
 * errno. */
static int append(uint32_t stream, const uint8_t *p, size_t n)
{
	int rc;
	if (pending && !direct) {
		pthread_mutex_lock(&lock);
		int quick = !needs_write(stream, n);
		if (quick)
			append_locked(stream, p, n); /* adds only: no write, cannot fail */
		pthread_mutex_unlock(&lock);
		if (quick)
			return 0;
	}
	Py_BEGIN_ALLOW_THREADS
	if (pending && !direct) {
		pthread_mutex_lock(&lock);
		rc = append_locked(stream, p, n);
		pthread_mutex_unlock(&lock);
	} else {
		rc = write_all(fd_of(stream), p, n);
	}
	Py_END_ALLOW_THREADS
	return rc;
}

/* ---- fork, exec, spawn ---- */

static void before_fork(void)
{
	pthread_mutex_lock(&lock);
	if (pending && !direct)
		flush_locked();
}

static void after_fork_parent(void)
{
	pthread_mutex_unlock(&lock);
}

static void after_fork_child(void)
{
	pthread_mutex_init(&lock, NULL);
	pthread_cond_init(&wake, NULL);
	direct = 1;
}

/* The audit events after which another process writes to the same pipes. */
static int audit_hook(const char *event, PyObject *args, void *data)
{
	(void)args;
	(void)data;
	if ((event[0] == 'o' && strncmp(event, "os.", 3) == 0 &&
	     (!strcmp(event + 3, "system") || !strncmp(event + 3, "exec", 4) ||
	      !strncmp(event + 3, "posix_spawn", 11) || !strncmp(event + 3, "spawn", 5))) ||
	    (event[0] == 's' && !strcmp(event, "subprocess.Popen")))
		flush_all();
	return 0;
}

/* ---- the raw stream type: what io.TextIOWrapper writes through to ---- */

typedef struct {
	PyObject_HEAD uint32_t stream;
	int closed;
} Raw;

static PyObject *raw_write(Raw *self, PyObject *arg)
{
	Py_buffer view;
	if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0)
		return NULL;
	int rc = self->closed ? EBADF : append(self->stream, view.buf, (size_t)view.len);
	Py_ssize_t n = view.len;
	PyBuffer_Release(&view);
	if (rc) {
		errno = rc;
		return PyErr_SetFromErrno(PyExc_OSError);
	}
	return PyLong_FromSsize_t(n);
}

/* flush() of a stream and of the module: writes what is pending, without the GIL. */
static PyObject *flush_for_python(void)
{
	int rc;
	Py_BEGIN_ALLOW_THREADS rc = flush_all();
	Py_END_ALLOW_THREADS
	if (rc) {
		errno = rc;
		return PyErr_SetFromErrno(PyExc_OSError);
	}
	Py_RETURN_NONE;
}

static PyObject *raw_flush(Raw *self, PyObject *unused)
{
	(void)self;
	(void)unused;
	return flush_for_python();
}

static PyObject *raw_close(Raw *self, PyObject *unused)
{
	PyObject *r = raw_flush(self, unused);
	self->closed = 1;
	return r;
}

static PyObject *raw_fileno(Raw *self, PyObject *unused)
{
	(void)unused;
	return PyLong_FromLong(self->stream == AL_STREAM_STDERR ? 2 : 1);
}

static PyObject *raw_true(Raw *self, PyObject *unused)
{
	(void)self;
	(void)unused;
	Py_RETURN_TRUE;
}

static PyObject *raw_false(Raw *self, PyObject *unused)
{
	(void)self;
	(void)unused;
	Py_RETURN_FALSE;
}

static PyObject *raw_isatty(Raw *self, PyObject *unused)
{
	(void)unused;
	return PyBool_FromLong(isatty(self->stream == AL_STREAM_STDERR ? 2 : 1));
}

static PyObject *raw_get_closed(Raw *self, void *unused)
{
	(void)unused;
	return PyBool_FromLong(self->closed);
}

static PyObject *raw_get_name(Raw *self, void *unused)
{
	(void)unused;
	return PyUnicode_FromString(self->stream == AL_STREAM_STDERR ? "<stderr>" : "<stdout>");
}

static PyMethodDef raw_methods[] = {
	{"write", (PyCFunction)raw_write, METH_O, "Writes bytes; returns how many."},
	{"flush", (PyCFunction)raw_flush, METH_NOARGS, "Writes what is pending."},
	{"close", (PyCFunction)raw_close, METH_NOARGS, "Flushes; further writes fail."},
	{"fileno", (PyCFunction)raw_fileno, METH_NOARGS, "The stream's fd."},
	{"writable", (PyCFunction)raw_true, METH_NOARGS, "True."},
	{"readable", (PyCFunction)raw_false, METH_NOARGS, "False."},
	{"seekable", (PyCFunction)raw_false, METH_NOARGS, "False."},
	{"isatty", (PyCFunction)raw_isatty, METH_NOARGS, "Whether the fd is a terminal."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef raw_getset[] = {
	{"closed", (getter)raw_get_closed, NULL, "Whether close() was called.", NULL},
	{"name", (getter)raw_get_name, NULL, "<stdout> or <stderr>.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RawType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_airlock_output.Raw",
	.tp_basicsize = sizeof(Raw),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "A standard stream through airlock's pending buffer.",
	.tp_methods = raw_methods,
	.tp_getset = raw_getset,
};

static PyObject *new_raw(uint32_t stream)
{
	Raw *r = PyObject_New(Raw, &RawType);
	if (r) {
		r->stream = stream;
		r->closed = 0;
	}
	return (PyObject *)r;
}

/* open(path) -> (stdout, stderr): maps the agent's pending buffer and starts the flusher. */
static PyObject *output_open(PyObject *module, PyObject *args)
{
	(void)module;
	const char *path;
	if (!PyArg_ParseTuple(args, "s", &path))
		return NULL;
	if (!pending) {
		int fd = open(path, O_RDWR | O_CLOEXEC);
		void *map = fd < 0 ? MAP_FAILED
				   : mmap(NULL, sizeof *pending,
					  PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		int err = errno;
		if (fd >= 0)
			close(fd);
		if (map == MAP_FAILED) {
			errno = err;
			return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
		}
		pthread_t thread;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, 64 << 10);
		struct al_pending_output *p = map;
		p->len = 0;
		pending = p;
		err = pthread_create(&thread, &attr, flusher, NULL);
		pthread_attr_destroy(&attr);
		if (err || pthread_atfork(before_fork, after_fork_parent, after_fork_child) != 0 ||
		    PySys_AddAuditHook(audit_hook, NULL) != 0) {
			pending = NULL;
			munmap(map, sizeof *pending);
			errno = err ? err : ENOMEM;
			return PyErr_SetFromErrno(PyExc_OSError);
		}
	}
	PyObject *out = new_raw(AL_STREAM_STDOUT), *err = new_raw(AL_STREAM_STDERR);
	PyObject *pair = out && err ? PyTuple_Pack(2, out, err) : NULL;
	Py_XDECREF(out);
	Py_XDECREF(err);
	return pair;
}

static PyObject *output_flush(PyObject *module, PyObject *unused)
{
	(void)module;
	(void)unused;
	return flush_for_python();
}

static PyMethodDef module_methods[] = {
	{"open", output_open, METH_VARARGS, "open(path) -> (stdout, stderr) raw streams."},
	{"flush", output_flush, METH_NOARGS, "Writes what is pending."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
	PyModuleDef_HEAD_INIT, "_airlock_output", "airlock's standard streams (start.py)", -1,
	module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__airlock_output(void)
{
	if (PyType_Ready(&RawType) != 0)
		return NULL;
	return PyModule_Create(&module_def);
}
