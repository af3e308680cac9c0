// Kernels for the "avx2" level (flags set per file in src/CMakeLists.txt).
#define TPCOMM_KERNEL_NAMESPACE avx2
#define TPCOMM_KERNEL_ISA_NAME "avx2"
#include "kernels/reduce_kernels.inc"
