/* zo_probe.cu compiled by the host compiler against the cudaemu emulation layer, as
 * emu_unit.cpp.in does for the kernels/cuda units. */
#include "cudaemu.h"

#include "zo_probe.cu"
