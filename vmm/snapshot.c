/* Snapshots of a running airlock microVM: the file format, and the order of save and restore.
 *
 * A snapshot is a directory with two files, written by `airlock-vmm --snapshot-to DIR` when it
 * gets SIGUSR2 (after the agent's READY) and read by `airlock-vmm --restore DIR`:
 *
 *   DIR/memory  guest RAM, byte for byte from guest-physical 0, exactly mem_size bytes long.
 *               All-zero pages are holes (sparse). Restore maps it MAP_PRIVATE: every VM
 *               restored from it shares its page cache, and each VM's writes are its own.
 *   DIR/state   everything else, in this format (little-endian, the host's x86_64 layout):
 *
 *       offset  size  field
 *       0       8     magic "ALCKSNAP"
 *       8       4     version (SNAP_VERSION)
 *       12      4     number of sections
 *       16      8     body length: the bytes of sections that follow the header
 *       24      8     mem_size: guest RAM bytes (a multiple of 4 KiB; DIR/memory's size)
 *       32      32    build id of the airlock-vmm that wrote it (ELF NT_GNU_BUILD_ID, padded)
 *       64      ...   sections, each: u32 type, u32 length, length bytes, zero padding to 8
 *       end-8   8     FNV-1a 64 of every byte before it
 *
 *   Section types are enum snap_section_type (snapshot.h): VM-wide KVM state, the vCPU's KVM
 *   state (raw KVM structs, see kvm_state.c) and one section per device that has state
 *   (SNAP_DEVICE + its index on the VM's buses: the device's name in 16 bytes, then the blob
 *   its save op wrote, described in that device's file). Every type appears at most once.
 *
 * Only the build that wrote a state file reads it (the build id must match): the raw KVM and
 * device structs need no versioning beyond that, and a host with a newer airlock-vmm simply
 * rebuilds its snapshots (a refused restore exits with status 3). The file is still untrusted
 * input: lengths, counts, sizes and guest addresses are checked before use, here and in each
 * device's restore.
 *
 * Save: the directory is opened at start-up (under the seccomp filter only files in it can be
 * opened); the vCPU is stopped and its last exit completed; then KVM state (kvm_state.c), device
 * state (each under its own lock), DIR/memory, DIR/state. Each file is written under a
 * temporary name, fsynced and renamed, the state last, so that a DIR/state always names a
 * complete memory file; an existing memory file is replaced, never truncated (VMs restored
 * from it may still map it).
 * Kept state (docs/kept-state.md): a restored VM saved with --keep-to-fds writes the same state
 * file, and in place of DIR/memory only the pages it changed since its restore (pages.h), both
 * into fds airlock created; restoring one reads the state from --state-in-fd, maps DIR/memory
 * (the snapshot it came from) and copies the pages over it before anything runs.
 * Restore: check the state file and the memory file's size, create the VM over the memory,
 * attach the same devices, restore KVM's state (VM-wide, then the vCPU), then the devices' (a
 * device may raise an interrupt as soon as it is restored; the irqchip must be in place by then).
 */
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layout.h"
#include "pages.h"
#include "snapshot.h"

#define PAGE_SIZE 4096u
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

struct snap_header {
	char magic[8];
	uint32_t version;
	uint32_t n_sections;
	uint64_t body_len;
	uint64_t mem_size;
	uint8_t build_id[SNAP_BUILD_ID_SIZE];
};
_Static_assert(sizeof(struct snap_header) == SNAP_HEADER_SIZE, "the header has no padding");

struct snap_section_header {
	uint32_t type;
	uint32_t len;
};

uint64_t snap_checksum(const uint8_t *p, size_t len)
{
	uint64_t h = FNV_OFFSET;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * FNV_PRIME;
	return h;
}

/* ---- writing ---- */

static void buf_append(struct snap_buf *b, const void *data, size_t len)
{
	if (b->error)
		return;
	if (len > SNAP_MAX_FILE - b->len) {
		b->error = -E2BIG;
		return;
	}
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 64u << 10;
		while (cap < b->len + len)
			cap *= 2;
		uint8_t *p = realloc(b->data, cap);
		if (!p) {
			b->error = -ENOMEM;
			return;
		}
		b->data = p;
		b->cap = cap;
	}
	if (data)
		memcpy(b->data + b->len, data, len);
	else
		memset(b->data + b->len, 0, len);
	b->len += len;
}

void snap_buf_init(struct snap_buf *b)
{
	*b = (struct snap_buf){0};
	buf_append(b, NULL, SNAP_HEADER_SIZE);
}

void snap_put(struct snap_buf *b, uint32_t type, const void *data, size_t len)
{
	if (len > UINT32_MAX || b->n_sections == SNAP_MAX_SECTIONS) {
		if (!b->error)
			b->error = -E2BIG;
		return;
	}
	struct snap_section_header h = {.type = type, .len = (uint32_t)len};
	buf_append(b, &h, sizeof h);
	buf_append(b, data, len);
	buf_append(b, NULL, (8 - len % 8) % 8);
	if (!b->error)
		b->n_sections++;
}

int snap_finish(struct snap_buf *b, uint64_t mem_size, const uint8_t build_id[SNAP_BUILD_ID_SIZE])
{
	if (b->error)
		return b->error;
	struct snap_header h = {.version = SNAP_VERSION, .n_sections = b->n_sections,
				.body_len = b->len - SNAP_HEADER_SIZE, .mem_size = mem_size};
	memcpy(h.magic, SNAP_MAGIC, sizeof h.magic);
	memcpy(h.build_id, build_id, SNAP_BUILD_ID_SIZE);
	memcpy(b->data, &h, sizeof h);
	uint64_t sum = snap_checksum(b->data, b->len);
	buf_append(b, &sum, sizeof sum);
	return b->error;
}

void snap_buf_free(struct snap_buf *b)
{
	free(b->data);
	*b = (struct snap_buf){0};
}

/* ---- reading ---- */

static int refuse(char *why, size_t why_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int refuse(char *why, size_t why_len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, why_len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int snap_parse(const uint8_t *file, size_t len, const uint8_t build_id[SNAP_BUILD_ID_SIZE],
	       struct snap_image *img, char *why, size_t why_len)
{
	struct snap_header h;
	memset(img, 0, sizeof *img);
	if (len < SNAP_HEADER_SIZE + SNAP_TRAILER_SIZE)
		return refuse(why, why_len, "truncated (%zu bytes)", len);
	memcpy(&h, file, sizeof h);
	if (memcmp(h.magic, SNAP_MAGIC, sizeof h.magic) != 0)
		return refuse(why, why_len, "not a snapshot state file (bad magic)");
	if (h.version != SNAP_VERSION)
		return refuse(why, why_len, "format version %u, this airlock-vmm reads %u",
			      h.version, SNAP_VERSION);
	if (h.body_len != len - SNAP_HEADER_SIZE - SNAP_TRAILER_SIZE)
		return refuse(why, why_len, "truncated or padded: %zu bytes, the header says %llu",
			      len, (unsigned long long)h.body_len + SNAP_HEADER_SIZE +
					   SNAP_TRAILER_SIZE);
	uint64_t sum;
	memcpy(&sum, file + len - SNAP_TRAILER_SIZE, sizeof sum);
	if (sum != snap_checksum(file, len - SNAP_TRAILER_SIZE))
		return refuse(why, why_len, "checksum mismatch (the file is corrupt)");
	if (memcmp(h.build_id, build_id, SNAP_BUILD_ID_SIZE) != 0)
		return refuse(why, why_len, "written by a different airlock-vmm build");
	if (h.mem_size == 0 || h.mem_size % PAGE_SIZE || h.mem_size > (uint64_t)LAYOUT_MAX_RAM)
		return refuse(why, why_len, "bad guest memory size %llu",
			      (unsigned long long)h.mem_size);
	if (h.n_sections > SNAP_MAX_SECTIONS)
		return refuse(why, why_len, "%u sections, at most %u", h.n_sections,
			      SNAP_MAX_SECTIONS);

	const uint8_t *p = file + SNAP_HEADER_SIZE;
	size_t left = (size_t)h.body_len;
	for (uint32_t i = 0; i < h.n_sections; i++) {
		struct snap_section_header s;
		if (left < sizeof s)
			return refuse(why, why_len, "section %u: header past the end", i);
		memcpy(&s, p, sizeof s);
		p += sizeof s;
		left -= sizeof s;
		size_t padded = (size_t)s.len + (8 - s.len % 8) % 8;
		if (s.len > left || padded > left)
			return refuse(why, why_len, "section %u (type %u): %u bytes past the end", i,
				      s.type, s.len);
		bool known = (s.type >= SNAP_VM_CLOCK && s.type <= SNAP_VM_IOAPIC) ||
			     (s.type >= SNAP_CPU_CPUID && s.type <= SNAP_CPU_TSC_KHZ) ||
			     (s.type >= SNAP_DEVICE && s.type <= SNAP_DEVICE_LAST);
		if (!known)
			return refuse(why, why_len, "section %u: unknown type %u", i, s.type);
		if (snap_find(img, s.type))
			return refuse(why, why_len, "section type %u appears twice", s.type);
		img->sections[img->n_sections++] =
			(struct snap_section){.type = s.type, .len = s.len, .data = p};
		p += padded;
		left -= padded;
	}
	if (left != 0)
		return refuse(why, why_len, "%zu bytes after the last section", left);
	img->mem_size = h.mem_size;
	return 0;
}

const struct snap_section *snap_find(const struct snap_image *img, uint32_t type)
{
	for (unsigned i = 0; i < img->n_sections; i++)
		if (img->sections[i].type == type)
			return &img->sections[i];
	return NULL;
}

/* ---- this build's id ---- */

struct build_id_search {
	uint8_t *id;
	bool found;
};

static int find_build_id(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct build_id_search *search = arg;
	(void)size;
	for (unsigned i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_NOTE)
			continue;
		const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
		size_t left = ph->p_memsz;
		while (left >= sizeof(ElfW(Nhdr))) {
			ElfW(Nhdr) n;
			memcpy(&n, p, sizeof n);
			size_t name_len = (n.n_namesz + 3u) & ~3u, desc_len = (n.n_descsz + 3u) & ~3u;
			if (name_len > left - sizeof n || desc_len > left - sizeof n - name_len)
				break;
			const uint8_t *name = p + sizeof n, *desc = name + name_len;
			if (n.n_type == NT_GNU_BUILD_ID && n.n_namesz == 4 && !memcmp(name, "GNU", 4)) {
				memcpy(search->id, desc,
				       n.n_descsz < SNAP_BUILD_ID_SIZE ? n.n_descsz : SNAP_BUILD_ID_SIZE);
				search->found = true;
				return 1;
			}
			p += sizeof n + name_len + desc_len;
			left -= sizeof n + name_len + desc_len;
		}
	}
	return 1; /* the first object is the program itself: look no further */
}

int snap_build_id(uint8_t id[SNAP_BUILD_ID_SIZE])
{
	memset(id, 0, SNAP_BUILD_ID_SIZE);
	struct build_id_search search = {.id = id};
	dl_iterate_phdr(find_build_id, &search);
	return search.found ? 0 : -ENOENT;
}

/* ---- save ---- */

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	for (unsigned i = 0; i < PAGE_SIZE / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	return true;
}

static int write_all_at(int fd, const uint8_t *p, size_t len, off_t at)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, at);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		at += n;
	}
	return 0;
}

/* Writes dir/name through dir/name.tmp: the non-zero runs of data (or all of it), the size,
 * fsync, rename. */
static int write_file(int dir_fd, const char *name, const uint8_t *data, size_t len, bool sparse)
{
	char tmp[64];
	snprintf(tmp, sizeof tmp, "%s.tmp", name);
	int fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = ftruncate(fd, (off_t)len) < 0 ? -errno : 0;
	for (size_t off = 0; rc == 0 && off < len;) {
		if (sparse && page_is_zero(data + off)) {
			off += PAGE_SIZE;
			continue;
		}
		size_t end = off + PAGE_SIZE;
		while (sparse && end < len && !page_is_zero(data + end))
			end += PAGE_SIZE;
		if (!sparse)
			end = len;
		rc = write_all_at(fd, data + off, end - off, (off_t)off);
		off = end;
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && renameat(dir_fd, tmp, dir_fd, name) < 0)
		rc = -errno;
	if (rc)
		unlinkat(dir_fd, tmp, 0);
	return rc;
}

static int save_devices(struct vm *vm, struct snap_buf *b)
{
	uint8_t *blob = malloc(SNAP_DEVICE_NAME_SIZE + SNAP_DEVICE_STATE_MAX);
	if (!blob)
		return -ENOMEM;
	int rc = 0;
	for (unsigned i = 0; rc == 0 && i < vm->n_devices; i++) {
		struct io_device *dev = vm->devices[i];
		if (!dev->save)
			continue;
		memset(blob, 0, SNAP_DEVICE_NAME_SIZE);
		strncpy((char *)blob, dev->name, SNAP_DEVICE_NAME_SIZE - 1);
		size_t len = 0;
		rc = dev->save(dev, blob + SNAP_DEVICE_NAME_SIZE, SNAP_DEVICE_STATE_MAX, &len);
		if (rc)
			vmm_log("snapshot: saving %s failed: %s", dev->name, strerror(-rc));
		else
			snap_put(b, SNAP_DEVICE + i, blob, SNAP_DEVICE_NAME_SIZE + len);
	}
	free(blob);
	return rc;
}

int snapshot_open_dir(const char *dir)
{
	int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0 && errno == ENOENT && mkdir(dir, 0755) == 0)
		dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0) {
		int err = -errno;
		vmm_log("snapshot: cannot open the directory %s: %s", dir, strerror(errno));
		return err;
	}
	return dir_fd;
}

/* The stopped VM's state file into b (initialised here; the caller frees it): its pending exit
 * completed, KVM's state, the devices'. Returns 0 or -errno (logged). */
static int build_state_file(struct vm *vm, struct snap_buf *b)
{
	uint8_t build_id[SNAP_BUILD_ID_SIZE];
	snap_buf_init(b);
	if (snap_build_id(build_id) != 0) {
		vmm_log("snapshot: this airlock-vmm has no build id (link it with --build-id)");
		return -ENOENT;
	}
	int rc = vcpu_complete_exit(vm);
	if (rc == 0)
		rc = kvm_state_save(vm, b);
	if (rc == 0)
		rc = save_devices(vm, b);
	if (rc == 0 && (rc = snap_finish(b, vm->mem.size, build_id)) != 0)
		vmm_log("snapshot: building the state file failed: %s", strerror(-rc));
	return rc;
}

int snapshot_save(struct vm *vm, int dir_fd, const char *dir)
{
	struct snap_buf b;
	int rc = build_state_file(vm, &b);
	if (rc) {
		snap_buf_free(&b);
		close(dir_fd);
		return rc;
	}

	/* a state file from before must not outlive its memory file */
	if (unlinkat(dir_fd, "state", 0) < 0 && errno != ENOENT) {
		rc = -errno;
		vmm_log("snapshot: cannot remove the old %s/state: %s", dir, strerror(errno));
	}
	if (rc == 0 && (rc = write_file(dir_fd, "memory", vm->mem.host, vm->mem.size, true)) != 0)
		vmm_log("snapshot: writing %s/memory failed: %s", dir, strerror(-rc));
	if (rc == 0 && (rc = write_file(dir_fd, "state", b.data, b.len, false)) != 0)
		vmm_log("snapshot: writing %s/state failed: %s", dir, strerror(-rc));
	if (rc == 0 && fsync(dir_fd) < 0) {
		rc = -errno;
		vmm_log("snapshot: fsync of %s failed: %s", dir, strerror(errno));
	}
	close(dir_fd);
	if (rc == 0 && vm->verbose)
		vmm_log("snapshot: wrote %s (%zu bytes of state, %llu MiB of memory)", dir, b.len,
			(unsigned long long)vm->mem.size >> 20);
	snap_buf_free(&b);
	return rc;
}

int snapshot_save_kept(struct vm *vm, int state_fd, int pages_fd, int pagemap_fd)
{
	struct snap_buf b;
	int rc = build_state_file(vm, &b);
	/* the pages file may be as large as RAM: past the log's limit (jail.c keeps the room) */
	struct rlimit fsize;
	if (rc == 0 && getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur < fsize.rlim_max) {
		fsize.rlim_cur = fsize.rlim_max;
		(void)setrlimit(RLIMIT_FSIZE, &fsize);
	}
	uint64_t pages = 0;
	/* both fds are new, empty files airlock created */
	if (rc == 0 && (rc = write_all_at(state_fd, b.data, b.len, 0)) != 0)
		vmm_log("kept state: writing the state failed: %s", strerror(-rc));
	if (rc == 0 &&
	    (rc = pages_write(pages_fd, pagemap_fd, vm->mem.host, vm->mem.size, &pages)) != 0)
		vmm_log("kept state: writing the pages failed: %s", strerror(-rc));
	if (rc == 0 && (fsync(state_fd) < 0 || fsync(pages_fd) < 0)) {
		rc = -errno;
		vmm_log("kept state: fsync failed: %s", strerror(errno));
	}
	if (rc == 0 && vm->verbose)
		vmm_log("kept state: %zu bytes of state, %llu changed pages", b.len,
			(unsigned long long)pages);
	snap_buf_free(&b);
	return rc;
}

/* ---- restore ---- */

/* The state file: at fd when it is not -1 (taken over), else dir_fd's "state". */
static int read_state_file(int dir_fd, int fd, uint8_t **data, size_t *len)
{
	if (fd < 0)
		fd = openat(dir_fd, "state", O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int err = -errno;
		if (fd >= 0)
			close(fd);
		return err;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)SNAP_MAX_FILE) {
		close(fd);
		return -EFBIG;
	}
	size_t size = (size_t)st.st_size, got = 0;
	uint8_t *p = malloc(size ? size : 1);
	if (!p) {
		close(fd);
		return -ENOMEM;
	}
	while (got < size) {
		ssize_t n = read(fd, p + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*data = p;
	*len = got;
	return 0;
}

int snapshot_load(const char *dir, int state_fd, struct snapshot *snap)
{
	*snap = (struct snapshot){.mem_fd = -1};
	uint8_t build_id[SNAP_BUILD_ID_SIZE];
	snap_build_id(build_id); /* without one, no snapshot matches (ours are never all zero) */
	int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0) {
		int err = -errno;
		vmm_log("snapshot %s refused: cannot open the directory: %s", dir, strerror(errno));
		return err;
	}
	int rc = read_state_file(dir_fd, state_fd, &snap->file, &snap->file_len);
	if (rc) {
		vmm_log("snapshot %s refused: cannot read %s/state: %s", dir, dir, strerror(-rc));
		close(dir_fd);
		return rc;
	}
	char why[160];
	rc = snap_parse(snap->file, snap->file_len, build_id, &snap->img, why, sizeof why);
	if (rc) {
		vmm_log("snapshot %s refused: state: %s", dir, why);
		close(dir_fd);
		return rc;
	}
	snap->mem_fd = openat(dir_fd, "memory", O_RDONLY | O_CLOEXEC);
	close(dir_fd);
	struct stat st;
	if (snap->mem_fd < 0 || fstat(snap->mem_fd, &st) < 0) {
		rc = -errno;
		vmm_log("snapshot %s refused: cannot open %s/memory: %s", dir, dir, strerror(errno));
		return rc;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != snap->img.mem_size) {
		vmm_log("snapshot %s refused: memory is %lld bytes, the state says %llu", dir,
			(long long)st.st_size, (unsigned long long)snap->img.mem_size);
		return -EINVAL;
	}
	return 0;
}

static int restore_devices(struct vm *vm, const struct snap_image *img)
{
	for (unsigned i = 0; i < vm->n_devices; i++) {
		struct io_device *dev = vm->devices[i];
		const struct snap_section *s = snap_find(img, SNAP_DEVICE + i);
		if (!dev->restore) {
			if (s) {
				vmm_log("snapshot: state for %s, which keeps none", dev->name);
				return -EINVAL;
			}
			continue;
		}
		char name[SNAP_DEVICE_NAME_SIZE] = {0};
		strncpy(name, dev->name, sizeof name - 1);
		if (!s || s->len < SNAP_DEVICE_NAME_SIZE ||
		    memcmp(s->data, name, SNAP_DEVICE_NAME_SIZE) != 0) {
			vmm_log("snapshot: no state for device %u (%s)", i, dev->name);
			return -EINVAL;
		}
		int rc = dev->restore(dev, s->data + SNAP_DEVICE_NAME_SIZE,
				      s->len - SNAP_DEVICE_NAME_SIZE);
		if (rc)
			return rc;
	}
	/* a device section beyond the VM's devices: another device set */
	for (unsigned i = vm->n_devices; i < VMM_MAX_DEVICES; i++)
		if (snap_find(img, SNAP_DEVICE + i)) {
			vmm_log("snapshot: state for device %u, which this VM does not have", i);
			return -EINVAL;
		}
	return 0;
}

int snapshot_restore(struct vm *vm, const struct snapshot *snap)
{
	if (vm->mem.size != snap->img.mem_size)
		return -EINVAL;
	/* KVM's state first: a device restored first may already take host bytes and raise its
	 * interrupt (the console wakes its I/O thread), which restoring the irqchip afterwards
	 * would wipe, leaving the guest waiting for an interrupt that never comes */
	int rc = kvm_state_restore(vm, &snap->img);
	if (rc == 0)
		rc = restore_devices(vm, &snap->img);
	return rc;
}
