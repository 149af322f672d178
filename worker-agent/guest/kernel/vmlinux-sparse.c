/* vmlinux-sparse IN OUT: copies the guest kernel's ELF file, splitting its PT_LOAD segments so
 * that long runs of filler bytes are not loaded at all.
 *
 * Why: x86-64's linker script aligns the entry text to 2 MiB on both sides and fills the gaps
 * with int3 (0xcc); with Brume's small kernel that is 3.7 MiB of the 6 MiB .text, and 2 MiB more
 * sit between .text and .rodata. QEMU copies every byte a PT_LOAD segment holds into guest RAM,
 * so every sandbox paid those megabytes of host memory for bytes that are never executed. Left
 * out of the segments, the guest pages stay untouched (they read as zeros, which nothing looks
 * at): the entry-text padding is never used, and the gaps the kernel frees at boot it poisons
 * itself before giving them to the page allocator.
 *
 * A run counts when it is whole pages, at least MIN_RUN bytes, of zeros, or of int3 in an
 * executable segment (zeros in .data and .init.data go too: guest RAM reads as zeros anyway).
 * The program header table grows in place: the kernel's first segment starts 2 MiB into the
 * file, far past the table. Anything unexpected (not ELF64 x86-64, no room) is an
 * error and nothing is written. Built and run by build-kernel.sh. */
#include <elf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 4096u
#define MIN_RUN (64u * 1024)
#define MAX_PHDRS 64

static unsigned char *file;
static size_t file_size;

static int fail(const char *msg) {
  fprintf(stderr, "vmlinux-sparse: %s\n", msg);
  return 1;
}

static int read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return -1;
  if (fseek(f, 0, SEEK_END) != 0) return fclose(f), -1;
  long n = ftell(f);
  if (n <= 0 || fseek(f, 0, SEEK_SET) != 0) return fclose(f), -1;
  file_size = (size_t)n;
  file = malloc(file_size);
  size_t got = file ? fread(file, 1, file_size, f) : 0;
  fclose(f);
  return got == file_size ? 0 : -1;
}

/* Is [from, to) of the file all one filler byte? int3 (0xcc) counts only in code. */
static int all_filler(size_t from, size_t to, int code) {
  unsigned char b = file[from];
  if (b != 0x00 && !(code && b == 0xcc)) return 0;
  for (size_t i = from; i < to; i++)
    if (file[i] != b) return 0;
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 3) return fail("usage: vmlinux-sparse IN OUT");
  if (read_file(argv[1]) < 0) return fail("cannot read the input file");
  if (file_size < sizeof(Elf64_Ehdr)) return fail("not an ELF file");
  Elf64_Ehdr *eh = (Elf64_Ehdr *)file;
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
      eh->e_machine != EM_X86_64 || eh->e_phentsize != sizeof(Elf64_Phdr) ||
      eh->e_phoff + (size_t)eh->e_phnum * sizeof(Elf64_Phdr) > file_size)
    return fail("not an ELF64 x86-64 executable");

  Elf64_Phdr out[MAX_PHDRS];
  size_t n_out = 0, dropped = 0, lowest_data = file_size;
  const Elf64_Phdr *in = (const Elf64_Phdr *)(file + eh->e_phoff);
  for (size_t i = 0; i < eh->e_phnum; i++) {
    const Elf64_Phdr *p = &in[i];
    if (p->p_filesz > 0 && p->p_offset < lowest_data) lowest_data = p->p_offset;
    if (p->p_type != PT_LOAD || p->p_filesz == 0) {
      if (n_out == MAX_PHDRS) return fail("too many program headers");
      out[n_out++] = *p;
      continue;
    }
    if (p->p_offset + p->p_filesz > file_size) return fail("a segment runs past the file");
    /* Walk the segment's file bytes page by page; a kept piece ends where a run starts. */
    size_t piece = 0; /* start of the current kept piece, relative to the segment */
    size_t at = 0;
    while (at < p->p_filesz) {
      size_t run_end = at;
      if ((p->p_offset + at) % PAGE == 0) {
        while (run_end + PAGE <= p->p_filesz &&
               all_filler(p->p_offset + run_end, p->p_offset + run_end + PAGE,
                          (p->p_flags & PF_X) != 0) &&
               file[p->p_offset + run_end] == file[p->p_offset + at])
          run_end += PAGE;
      }
      if (run_end - at < MIN_RUN) {
        at = run_end > at ? run_end : at + 1;
        continue;
      }
      if (at > piece) {
        if (n_out == MAX_PHDRS) return fail("too many program headers");
        Elf64_Phdr q = *p;
        q.p_offset += piece, q.p_vaddr += piece, q.p_paddr += piece;
        q.p_filesz = q.p_memsz = at - piece;
        q.p_align = PAGE;
        out[n_out++] = q;
      }
      dropped += run_end - at;
      piece = at = run_end;
    }
    if (piece == p->p_memsz) continue; /* the segment ended in a run */
    if (n_out == MAX_PHDRS) return fail("too many program headers");
    Elf64_Phdr q = *p; /* the rest, with the segment's memory-only tail (.bss) */
    q.p_offset += piece, q.p_vaddr += piece, q.p_paddr += piece;
    q.p_filesz -= piece;
    q.p_memsz -= piece;
    if (piece > 0) q.p_align = PAGE;
    out[n_out++] = q;
  }
  if (eh->e_phoff + n_out * sizeof(Elf64_Phdr) > lowest_data)
    return fail("no room for the program headers before the first segment");
  memcpy(file + eh->e_phoff, out, n_out * sizeof(Elf64_Phdr));
  eh->e_phnum = (Elf64_Half)n_out;

  FILE *f = fopen(argv[2], "wb");
  if (f == NULL || fwrite(file, 1, file_size, f) != file_size || fclose(f) != 0)
    return fail("cannot write the output file");
  printf("%zu KiB of filler left out of %zu program headers\n", dropped / 1024, n_out);
  free(file);
  return 0;
}
