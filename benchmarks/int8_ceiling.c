// Helpers for benchmarks/int8_ceiling.py, built there as a shared library (cc -O2 -mavx2 -mfma -shared -fPIC):
//   fma_peak:   the FP32 FMA limit of one core, measured: 5 rows x 16 columns per k (2 weight loads, 5 broadcasts,
//               10 independent 256-bit FMAs, as XNNPACK's f32-igemm 5x16 fma3_broadcast and MLAS's FMA3 SGEMM), every
//               operand in L1, so nothing but the FMA pipes limits it. Returns multiply-accumulates per nanosecond.
//   time_igemm: calls one of XNNPACK's igemm microkernels (found in LiteRT's library by its symbol) over a conv
//               layer's output rows, tile by tile, `repeats` times; returns the nanoseconds. Its signature is
//               XNNPACK's (src/qs8-igemm/MRx8c8-avx2.c.in, src/f32-igemm/): mr, nc, kc, ks, a, w, c, cm_stride,
//               cn_stride, a_offset, zero, params.
#include <stddef.h>
#include <time.h>
#include <immintrin.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

#define K 512  // k steps per pass: 5 x 512 + 16 x 512 floats, 43 KB, stay in L1
static float fa[5 * K] __attribute__((aligned(64)));
static float fw[16 * K] __attribute__((aligned(64)));
static volatile float sink;

double fma_peak(long passes) {
    // named accumulators, not an array: an array kept them on the stack (a load and a store per FMA, half the rate)
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00;
    const double start = now_ns();
    for (long p = 0; p < passes; p++) {
        const float *a = fa, *w = fw;
#pragma GCC unroll 4
        for (int k = 0; k < K; k++, a += 5, w += 16) {
            const __m256 w0 = _mm256_load_ps(w), w1 = _mm256_load_ps(w + 8);
#define ROW(r)                                       \
    {                                                \
        const __m256 x = _mm256_broadcast_ss(a + r); \
        c##r##0 = _mm256_fmadd_ps(x, w0, c##r##0);   \
        c##r##1 = _mm256_fmadd_ps(x, w1, c##r##1);   \
    }
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4)
#undef ROW
        }
    }
    const double elapsed = now_ns() - start;
    const __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c00, c01), _mm256_add_ps(c10, c11)),
                                   _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c20, c21), _mm256_add_ps(c30, c31)),
                                                 _mm256_add_ps(c40, c41)));
    sink = _mm256_cvtss_f32(s);  // the sums are used, so the loop is not optimised away
    return (double)passes * K * 5 * 16 / elapsed;
}

typedef void (*igemm_fn)(size_t mr, size_t nc, size_t kc, size_t ks, const void **a, const void *w, void *c,
                         size_t cm_stride, size_t cn_stride, size_t a_offset, const void *zero, const void *params);

double time_igemm(void *fn, size_t mr, size_t rows, size_t nc, size_t kc, size_t ks, const void **a, const void *w,
                  void *c, size_t cm_stride, size_t cn_stride, const void *zero, const void *params, long repeats) {
    const double start = now_ns();
    for (long r = 0; r < repeats; r++)
        for (size_t m = 0; m < rows; m += mr)
            ((igemm_fn)fn)(rows - m < mr ? rows - m : mr, nc, kc, ks, a, w, c, cm_stride, cn_stride, 0, zero, params);
    return now_ns() - start;
}
