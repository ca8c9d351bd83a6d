/* airlock's node addon: reseeds OpenSSL's random generators from the kernel, and keeps a
 * descriptor from the program's children.
 *
 * The guest's node waits in every VM restored from one snapshot with the same memory, OpenSSL's
 * DRBGs included: without a reseed, every VM would draw the same crypto.randomBytes, TLS client
 * randoms and key shares. start.js calls reseed() after the agent fed the kernel fresh host
 * entropy (at each prepare, or at go), before any user code runs.
 *
 * Debian's node links the system libcrypto, so this addon reaches the very DRBGs node draws from.
 * The primary DRBG is reseeded from the kernel's getrandom() plus 48 bytes of our own as
 * additional input; this thread's public and private DRBGs are reseeded directly, and every
 * other thread's (libuv's pool) reseeds from the primary on its next draw, as OpenSSL reseeds a
 * child whose parent has been reseeded since.
 *
 * moveDescriptor(fd) moves a descriptor to a number above 64 that the kernel picks, close-on-exec,
 * which node itself cannot: start.js keeps the ready pipe (fd 4) for its exit report, but not
 * where the program would look for it, nor in the program's children. (Reopening it through
 * /proc/self/fd/4 fails: the pipe is the agent's, root's, mode 0600.)
 *
 * Built inside the base tree against Debian's node and OpenSSL headers (images/rootfs-base.sh).
 */
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/random.h>
#include <unistd.h>

/* Fills buf from the kernel; returns 0 or an errno. */
static int kernel_random(unsigned char *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = getrandom(buf + got, len - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		got += (size_t)n;
	}
	return 0;
}

static int reseed_one(EVP_RAND_CTX *drbg, const unsigned char *adin, size_t adin_len)
{
	return drbg != NULL && EVP_RAND_reseed(drbg, 0, NULL, 0, adin, adin_len) == 1;
}

/* reseed(): true once all three are reseeded; throws when the kernel or OpenSSL fails. */
static napi_value reseed(napi_env env, napi_callback_info info)
{
	(void)info;
	unsigned char adin[48];
	if (kernel_random(adin, sizeof adin) != 0) {
		napi_throw_error(env, NULL, "airlock reseed: getrandom failed");
		return NULL;
	}
	int ok = reseed_one(RAND_get0_primary(NULL), adin, sizeof adin) &&
		 reseed_one(RAND_get0_public(NULL), adin, sizeof adin) &&
		 reseed_one(RAND_get0_private(NULL), adin, sizeof adin);
	OPENSSL_cleanse(adin, sizeof adin);
	if (!ok) {
		napi_throw_error(env, NULL, "airlock reseed: OpenSSL refused to reseed");
		return NULL;
	}
	napi_value result;
	napi_get_boolean(env, true, &result);
	return result;
}

/* moveDescriptor(fd): the new descriptor, fd closed; throws on a bad argument or descriptor. */
static napi_value move_descriptor(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value arg;
	int32_t fd;
	if (napi_get_cb_info(env, info, &argc, &arg, NULL, NULL) != napi_ok || argc != 1 ||
	    napi_get_value_int32(env, arg, &fd) != napi_ok || fd < 0) {
		napi_throw_type_error(env, NULL, "airlock moveDescriptor: a descriptor number");
		return NULL;
	}
	int moved = fcntl(fd, F_DUPFD_CLOEXEC, 64);
	if (moved < 0 || close(fd) != 0) {
		napi_throw_error(env, NULL, "airlock moveDescriptor: fcntl failed");
		return NULL;
	}
	napi_value result;
	napi_create_int32(env, moved, &result);
	return result;
}

NAPI_MODULE_INIT()
{
	napi_value fn;
	if (napi_create_function(env, "reseed", NAPI_AUTO_LENGTH, reseed, NULL, &fn) != napi_ok ||
	    napi_set_named_property(env, exports, "reseed", fn) != napi_ok ||
	    napi_create_function(env, "moveDescriptor", NAPI_AUTO_LENGTH, move_descriptor, NULL,
				 &fn) != napi_ok ||
	    napi_set_named_property(env, exports, "moveDescriptor", fn) != napi_ok)
		return NULL;
	return exports;
}
