/* The kernels for any CPU: 16-byte vectors (SSE2 on x86-64), no FMA.  See kernels.h. */
#define FG_LEVEL generic
#define FG_VBYTES 16
#define FG_NREG 16
#include "kernels.h"
