/* LD_PRELOAD library: the process sees this CPU as one without AVX-512, VNNI and AMX (issue 21, item 3).
 *
 * Runtimes choose their kernels from CPUID (onnxruntime's MLAS, XNNPACK through cpuinfo, torch, numpy). On a CPU with
 * the cpuid_fault flag (/proc/cpuinfo), arch_prctl(ARCH_SET_CPUID, 0) makes the CPUID instruction fault in this
 * process; the SIGSEGV handler below runs the real CPUID and clears the feature bits of leaf 7 (Intel SDM vol. 2A,
 * CPUID, table 3-8) before handing the answer back, so every library picks its AVX2 kernels, as on an AVX2 CPU
 * without VNNI. The core itself stays the host's (its clock, caches and pipes): the kernels are a no-VNNI CPU's, the
 * timing is this core's running them.
 *
 * The setting is reset by execve and kept across fork and threads. A process that installs its own SIGSEGV handler
 * (perf, Python's faulthandler) would die at its next CPUID: preload this into the measured process only.
 * Built by tests/avx2_only.py (cc -O2 -shared -fPIC), used by its tests and benchmarks/int8_profile.py --avx2-only.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))
/* leaf 7, subleaf 0 */
#define EBX_AVX512 (BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31))  /* F DQ IFMA PF ER CD BW VL */
#define ECX_AVX512 (BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14))  /* VBMI VBMI2 VNNI BITALG VPOPCNTDQ */
#define EDX_AVX512_AMX (BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25))  /* 4VNNIW 4FMAPS VP2INTERSECT AMX-BF16 FP16 AMX-TILE AMX-INT8 */
/* leaf 7, subleaf 1 */
#define EAX_VNNI (BIT(4) | BIT(5) | BIT(23))  /* AVX-VNNI AVX512-BF16 AVX-IFMA */
#define EDX_VNNI (BIT(4) | BIT(5) | BIT(10))  /* AVX-VNNI-INT8 AVX-NE-CONVERT AVX-VNNI-INT16 */

static long set_cpuid(int enabled) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled); }

static void on_segv(int sig, siginfo_t *info, void *context) {
    (void)sig; (void)info;
    greg_t *reg = ((ucontext_t *)context)->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)reg[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) {  /* a real fault, not CPUID: return to it with the default action */
        signal(SIGSEGV, SIG_DFL);
        return;
    }
    uint32_t leaf = (uint32_t)reg[REG_RAX], sub = (uint32_t)reg[REG_RCX], a, b, c, d;
    set_cpuid(1);
    __cpuid_count(leaf, sub, a, b, c, d);
    set_cpuid(0);
    if (leaf == 7 && sub == 0) {
        b &= ~EBX_AVX512; c &= ~ECX_AVX512; d &= ~EDX_AVX512_AMX;
    } else if (leaf == 7 && sub == 1) {
        a &= ~EAX_VNNI; d &= ~EDX_VNNI;
    }
    reg[REG_RAX] = a; reg[REG_RBX] = b; reg[REG_RCX] = c; reg[REG_RDX] = d;
    reg[REG_RIP] += 2;  /* CPUID is 0F A2 */
}

__attribute__((constructor)) static void mask_cpuid(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &action, NULL);
    if (set_cpuid(0) != 0) {
        static const char msg[] = "avx2_only: this CPU cannot fault on CPUID (no cpuid_fault flag); fix: run on a host "
                                  "whose /proc/cpuinfo lists cpuid_fault, or on a CPU without VNNI\n";
        (void)!write(2, msg, sizeof msg - 1);
        _exit(3);
    }
}
