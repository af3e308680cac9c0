// Kernels for the "scalar" level (flags set per file in src/CMakeLists.txt).
#define TPCOMM_KERNEL_NAMESPACE scalar
#define TPCOMM_KERNEL_ISA_NAME "scalar"
#include "kernels/reduce_kernels.inc"
