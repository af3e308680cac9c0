// Kernels for the "avx512bf16" level (flags set per file in src/CMakeLists.txt).
#define TPCOMM_KERNEL_NAMESPACE avx512bf16
#define TPCOMM_KERNEL_ISA_NAME "avx512bf16"
#include "kernels/reduce_kernels.inc"
