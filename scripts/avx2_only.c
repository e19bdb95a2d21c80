/*
 * `BENCH_CPU=avx2 make bench` on an AVX-512 host: preloaded into every process the
 * benchmark starts, this hides AVX-512 (and AVX-VNNI, AMX) from runtime feature
 * detection, so that tract's native kernels and Viceroy's Cranelift generate what they
 * generate on an AVX2-only CPU (Fastly's fleet is not ours to choose, and an AVX2-only
 * host is not always at hand).
 *
 * How: Linux's CPUID faulting (`arch_prctl(ARCH_SET_CPUID, 0)`, CPUs with the
 * `cpuid_fault` flag) makes every `cpuid` in the process trap with SIGSEGV; the handler
 * runs the real `cpuid` with faulting lifted for one instruction, clears the feature bits
 * of leaf 7, and steps over the instruction. The setting is per thread, inherited by
 * threads and children, and reset by execve, which is why it is set again in each
 * process by this library's constructor. Other faults go to the handler installed before
 * (or the default action). What it cannot hide: the code the dynamic loader chose before
 * the constructor ran (glibc's string functions) and XCR0.
 *
 * Built with -DCHECK it is a program that prints what `cpuid` reports, to confirm the
 * masking took (`LD_PRELOAD=avx2_only.so ./check` prints `avx512f 0`).
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#ifdef CHECK
#include <cpuid.h>
int main(void) {
  unsigned a, b, c, d;
  __cpuid_count(7, 0, a, b, c, d);
  printf("avx2 %u avx512f %u\n", (b >> 5) & 1, (b >> 16) & 1);
  return 0;
}
#else

static struct sigaction previous;

static void real_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
  __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

/* Leaf 7's AVX-512 family and the extensions an AVX2-only Zen 3 lacks. */
static void mask(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
  if (leaf != 7) return;
  if (sub == 0) {
    /* EBX: avx512f 16, dq 17, ifma 21, pf 26, er 27, cd 28, bw 30, vl 31 */
    r[1] &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) |
              (1u << 30) | (1u << 31));
    /* ECX: vbmi 1, vbmi2 6, vnni 11, bitalg 12, vpopcntdq 14 */
    r[2] &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
    /* EDX: 4vnniw 2, 4fmaps 3, vp2intersect 8, amx-bf16 22, fp16 23, amx-tile 24, amx-int8 25 */
    r[3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) |
              (1u << 25));
  } else if (sub == 1) {
    /* EAX: avx-vnni 4, avx512-bf16 5 */
    r[0] &= ~((1u << 4) | (1u << 5));
  }
}

static void on_fault(int sig, siginfo_t *info, void *context) {
  ucontext_t *uc = context;
  greg_t *regs = uc->uc_mcontext.gregs;
  const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
  if (ip[0] == 0x0f && ip[1] == 0xa2) {
    uint32_t leaf = (uint32_t)regs[REG_RAX], sub = (uint32_t)regs[REG_RCX], r[4];
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    real_cpuid(leaf, sub, r);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
    mask(leaf, sub, r);
    regs[REG_RAX] = r[0];
    regs[REG_RBX] = r[1];
    regs[REG_RCX] = r[2];
    regs[REG_RDX] = r[3];
    regs[REG_RIP] += 2;
    return;
  }
  if (previous.sa_flags & SA_SIGINFO) {
    previous.sa_sigaction(sig, info, context);
  } else if (previous.sa_handler == SIG_DFL || previous.sa_handler == SIG_IGN) {
    /* The faulting instruction runs again, under the default action. */
    sigaction(sig, &previous, NULL);
  } else {
    previous.sa_handler(sig);
  }
}

__attribute__((constructor)) static void hide_avx512(void) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_sigaction = on_fault;
  action.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&action.sa_mask);
  sigaction(SIGSEGV, &action, &previous);
  if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0)
    fprintf(stderr, "avx2_only: CPUID faulting unavailable; features not hidden\n");
}
#endif
