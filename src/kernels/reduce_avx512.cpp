// Kernels for the "avx512" level (flags set per file in src/CMakeLists.txt).
#define TPCOMM_KERNEL_NAMESPACE avx512
#define TPCOMM_KERNEL_ISA_NAME "avx512"
#include "kernels/reduce_kernels.inc"
