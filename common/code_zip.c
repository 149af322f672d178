#include "code_zip.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdbool.h>
#include <string.h>

#include "log.h"

/* ---- the central directory ---- */

static uint16_t le16(const unsigned char *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const unsigned char *p) {
  return le32(p) | (uint64_t)le32(p + 4) << 32;
}

#define EOCD_SIG 0x06054b50u
#define EOCD_LEN 22
#define Z64_LOCATOR_SIG 0x07064b50u
#define Z64_LOCATOR_LEN 20
#define Z64_EOCD_SIG 0x06064b50u
#define Z64_EOCD_LEN 56
#define CDH_SIG 0x02014b50u
#define CDH_LEN 46

static int not_zip(brume_err **err, const char *why) {
  return brume_err_set(err, BRUME_INVALID_ARGUMENT, "the code archive is not a valid zip: %s", why);
}

/* Reads the central directory: the sum of the entries' uncompressed sizes and their number. */
static int central_directory(const unsigned char *buf, size_t len, uint64_t *total, uint64_t *count,
                             brume_err **err) {
  *total = 0;
  *count = 0;
  if (len < EOCD_LEN) return not_zip(err, "too short");
  /* The end-of-central-directory record is the last one whose comment fits the file. */
  size_t eocd = 0;
  bool found = false;
  size_t lowest = len - EOCD_LEN > 65535 ? len - EOCD_LEN - 65535 : 0;
  for (size_t i = len - EOCD_LEN + 1; i-- > lowest;) {
    if (le32(buf + i) == EOCD_SIG && i + EOCD_LEN + le16(buf + i + 20) <= len) {
      eocd = i;
      found = true;
      break;
    }
  }
  if (!found) return not_zip(err, "no end of central directory");
  const unsigned char *e = buf + eocd;
  if (le16(e + 4) != 0 || le16(e + 6) != 0) return not_zip(err, "a multi-disk archive");
  uint64_t entries = le16(e + 10), cd_size = le32(e + 12), cd_off = le32(e + 16);
  if (entries == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu) {
    if (eocd < Z64_LOCATOR_LEN || le32(buf + eocd - Z64_LOCATOR_LEN) != Z64_LOCATOR_SIG)
      return not_zip(err, "zip64 sizes without a zip64 locator");
    uint64_t z = le64(buf + eocd - Z64_LOCATOR_LEN + 8);
    if (z > len || len - z < Z64_EOCD_LEN || le32(buf + z) != Z64_EOCD_SIG)
      return not_zip(err, "a bad zip64 end of central directory");
    if (le32(buf + z + 16) != 0 || le32(buf + z + 20) != 0)
      return not_zip(err, "a multi-disk archive");
    entries = le64(buf + z + 32);
    cd_size = le64(buf + z + 40);
    cd_off = le64(buf + z + 48);
  }
  if (cd_off > len || cd_size > len - cd_off)
    return not_zip(err, "the central directory is outside the file");
  const unsigned char *p = buf + cd_off, *end = buf + cd_off + cd_size;
  uint64_t sum = 0;
  for (uint64_t i = 0; i < entries; i++) {
    if ((size_t)(end - p) < CDH_LEN || le32(p) != CDH_SIG)
      return not_zip(err, "a truncated central directory");
    uint64_t usize = le32(p + 24);
    size_t nlen = le16(p + 28), xlen = le16(p + 30), clen = le16(p + 32);
    if ((size_t)(end - p) - CDH_LEN < nlen + xlen + clen)
      return not_zip(err, "a truncated central directory entry");
    if (usize == 0xffffffffu) {
      /* The zip64 extra field holds the 64-bit values, in order, of the 32-bit fields that
       * are 0xffffffff: uncompressed size first. */
      const unsigned char *x = p + CDH_LEN + nlen, *xend = x + xlen;
      bool have = false;
      while (xend - x >= 4) {
        uint16_t id = le16(x), sz = le16(x + 2);
        if ((size_t)(xend - x - 4) < sz) break;
        if (id == 0x0001 && sz >= 8) {
          usize = le64(x + 4);
          have = true;
          break;
        }
        x += 4 + sz;
      }
      if (!have) return not_zip(err, "an entry without its zip64 size");
    }
    if (usize > UINT64_MAX - sum) return not_zip(err, "entry sizes overflow");
    sum += usize;
    p += CDH_LEN + nlen + xlen + clen;
  }
  *total = sum;
  *count = entries;
  return 0;
}

int brume_code_zip_unzipped_size(const unsigned char *buf, size_t len, uint64_t *total,
                                 brume_err **err) {
  uint64_t count;
  return central_directory(buf, len, total, &count, err);
}

/* ---- the entries, read with libarchive ---- */

/* Why an archive breaks the rules (code_zip.h). Pointers compared by brume_code_zip_check. */
static const char NOT_ZIP[] = "the archive cannot be opened as a zip file";
static const char BAD_HEADER[] = "an entry header cannot be read";
static const char BAD_DATA[] = "an entry cannot be read";
static const char TOO_BIG[] = "the files are over the size limit";
static const char BAD_PATH[] = "an entry's path is absolute, empty or has a . or .. component";
static const char BAD_TYPE[] = "an entry is not a regular file, a directory or a symlink";
static const char NO_ENTRIES[] = "the archive has no entries";

/* Whether a path fits GuestCodeFile.path: relative, non-empty components, no "." or "..". */
static bool code_path_ok(const char *path) {
  if (path[0] == '\0' || path[0] == '/') return false;
  for (const char *p = path; *p;) {
    size_t n = strcspn(p, "/");
    if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) return false;
    p += n;
    if (*p == '/' && *++p == '\0') return false;
  }
  return true;
}

static void add_file(Brume__GuestCode *code, size_t *cap, Brume__GuestCodeFile *f) {
  if (code->n_files == *cap) {
    *cap = *cap ? *cap * 2 : 16;
    code->files = brume_xrealloc(code->files, *cap * sizeof(*code->files));
  }
  code->files[code->n_files++] = f;
}

/* Reads the current entry's data into f, at most *budget bytes (decremented). */
static const char *read_entry(struct archive *a, Brume__GuestCodeFile *f, uint64_t *budget) {
  size_t cap = 0;
  for (;;) {
    if (f->data.len == cap) {
      if (cap >= *budget) {
        char probe;
        la_ssize_t n = archive_read_data(a, &probe, 1);
        if (n == 0) return NULL;
        return n < 0 ? BAD_DATA : TOO_BIG;
      }
      size_t want = cap ? cap * 2 : 65536;
      cap = want < *budget ? want : (size_t)*budget;
      f->data.data = brume_xrealloc(f->data.data, cap);
    }
    la_ssize_t n = archive_read_data(a, f->data.data + f->data.len, cap - f->data.len);
    if (n < 0) return BAD_DATA;
    if (n == 0) break;
    f->data.len += (size_t)n;
  }
  *budget -= f->data.len;
  return NULL;
}

/* Inflates the current entry's data and throws it away, counting it against *budget. */
static const char *discard_entry(struct archive *a, uint64_t *budget) {
  char buf[16384];
  for (;;) {
    la_ssize_t n = archive_read_data(a, buf, sizeof(buf));
    if (n < 0) return BAD_DATA;
    if (n == 0) return NULL;
    if ((uint64_t)n > *budget) return TOO_BIG;
    *budget -= (uint64_t)n;
  }
}

/* Reads every entry of zip by the rules, with at most max_bytes of file data in all: into code
 * when it is non-NULL, else only checking. Returns NULL, or why the archive is refused and, in
 * *bad (heap, may be NULL), the path of the entry that broke a rule. */
static const char *walk_zip(const void *zip, size_t len, uint64_t max_bytes, Brume__GuestCode *code,
                            char **bad) {
  struct archive *a = archive_read_new();
  BRUME_ENSURE(a);
  /* The seekable reader takes modes and types from the central directory, as unzip does. */
  archive_read_support_format_zip_seekable(a);
  size_t cap = 0, entries = 0;
  uint64_t budget = max_bytes;
  const char *why = NULL;
  *bad = NULL;
  if (archive_read_open_memory(a, zip, len) != ARCHIVE_OK) why = NOT_ZIP;
  struct archive_entry *e;
  while (why == NULL) {
    int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK) {
      /* ARCHIVE_WARN too: the local header disagrees with the central directory. */
      why = BAD_HEADER;
      const char *name = r == ARCHIVE_WARN ? archive_entry_pathname(e) : NULL;
      if (name) *bad = brume_xstrdup(name);
      break;
    }
    entries++;
    const char *name = archive_entry_pathname(e);
    brume_autofree char *path = brume_xstrdup(name ? name : "");
    size_t n = strlen(path);
    mode_t type = archive_entry_filetype(e);
    if (type == AE_IFDIR && n > 1 && path[n - 1] == '/') path[n - 1] = '\0';
    Brume__GuestCodeFile *f = NULL;
    if (code) {
      f = brume_xmalloc(sizeof(*f));
      brume__guest_code_file__init(f);
      add_file(code, &cap, f);
      f->path = brume_xstrdup(path);
      f->mode = archive_entry_perm(e) & 0777;
    }
    const char *target = archive_entry_symlink(e);
    if (!code_path_ok(path)) {
      why = BAD_PATH;
    } else if (type == AE_IFREG) {
      if (f) f->type = BRUME__GUEST_CODE_FILE__TYPE__REGULAR;
      why = f ? read_entry(a, f, &budget) : discard_entry(a, &budget);
    } else if (type == AE_IFDIR) {
      if (f) f->type = BRUME__GUEST_CODE_FILE__TYPE__DIRECTORY;
    } else if (type == AE_IFLNK && target && target[0]) {
      if (f) {
        f->type = BRUME__GUEST_CODE_FILE__TYPE__SYMLINK;
        f->data.data = (uint8_t *)brume_xstrdup(target);
        f->data.len = strlen(target);
      }
    } else {
      why = BAD_TYPE;
    }
    if (why && why != TOO_BIG) *bad = brume_steal(&path);
  }
  if (why == NULL && entries == 0) why = NO_ENTRIES;
  archive_read_free(a);
  return why;
}

Brume__GuestCode *brume_code_zip_unpack(const void *zip, size_t len, uint64_t max_bytes,
                                        const char **why) {
  Brume__GuestCode *code = brume_xmalloc(sizeof(*code));
  brume__guest_code__init(code);
  brume_autofree char *bad = NULL;
  *why = walk_zip(zip, len, max_bytes, code, &bad);
  if (*why) {
    brume__guest_code__free_unpacked(code, NULL);
    return NULL;
  }
  return code;
}

int brume_code_zip_check(const void *zip, size_t len, uint64_t max_unpacked, brume_err **err) {
  /* The central directory first: a bomb is refused before a byte of it is inflated. */
  uint64_t declared = 0, entries = 0;
  if (central_directory(len ? zip : (const void *)"", len, &declared, &entries, err) < 0) return -1;
  if (entries == 0) return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s", NO_ENTRIES);
  if (declared > max_unpacked)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "the archive unpacks to %llu bytes, over the %llu-byte limit",
                         (unsigned long long)declared, (unsigned long long)max_unpacked);
  brume_autofree char *bad = NULL;
  const char *why = walk_zip(len ? zip : (const void *)"", len, max_unpacked, NULL, &bad);
  if (why == NULL) return 0;
  if (why == TOO_BIG)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "the archive unpacks to more than %llu bytes, the limit, although its "
                         "central directory says %llu",
                         (unsigned long long)max_unpacked, (unsigned long long)declared);
  if (bad) {
    char q[256];
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s: %s", why,
                         brume_log_quote(q, sizeof(q), bad));
  }
  return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s", why);
}
