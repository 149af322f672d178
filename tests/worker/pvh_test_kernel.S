/* A stand-in guest kernel for the libvirt tests: an ELF that QEMU boots through its PVH entry
 * (the XEN_ELFNOTE_PHYS32_ENTRY note, as the real guest vmlinux), which prints one line on the
 * first serial port and halts. It boots in milliseconds under TCG and KVM alike, so the tests
 * exercise libvirt, the domain XML and the console log without the real guest image. It never
 * answers on the control channel: to the accelerator probe it is a guest that boots but whose
 * agent never comes up. Assembled with --defsym CRASH=1 it triple-faults after its line instead
 * of halting (a guest that dies during boot: the CPU resets, and on_reboot=destroy ends the
 * domain). */
	.code32

	.section .note.pvh, "a"
	.balign 4
	.long 4                 /* name size: "Xen\0" */
	.long 4                 /* descriptor size */
	.long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long _start            /* 32-bit physical entry point, paging off */

	.text
	.globl _start
_start:
	cli
	mov $banner, %esi
	mov $0x3f8, %dx         /* COM1 data register */
1:	lodsb
	test %al, %al
	jz 2f
	out %al, (%dx)
	jmp 1b
2:
.ifdef CRASH
	lidt empty_idt          /* no interrupt table: the breakpoint below cannot be delivered */
	int3                    /* -> double fault -> triple fault -> reset */
.endif
3:	hlt
	jmp 3b

	.section .rodata
banner:
	.asciz "brume test kernel: up\n"
	.balign 8
empty_idt:
	.word 0                 /* limit */
	.long 0                 /* base */

	.section .note.GNU-stack, "", @progbits
